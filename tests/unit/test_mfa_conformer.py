"""MFA-Conformer: output shapes, every block's output reaches the pooling,
length handling."""

import pytest
import torch

from speechbrain_ssv.lobes.mfa_conformer import ConvSubsampling, MFAConformer

SMALL = {
    "input_size": 20,
    "d_model": 16,
    "num_blocks": 3,
    "nhead": 2,
    "d_ffn": 32,
    "kernel_size": 5,
    "lin_neurons": 8,
}


@pytest.fixture
def small():
    torch.manual_seed(0)
    return MFAConformer(**SMALL).eval()


@pytest.mark.parametrize("n_frames", [40, 57])
def test_output_shape_small(small, n_frames):
    out = small(torch.randn(3, n_frames, 20), torch.tensor([1.0, 0.7, 0.4]))
    assert out.shape == (3, 1, 8)


def test_output_shape_paper_config():
    torch.manual_seed(0)
    enc = MFAConformer().eval()  # 80 fbanks, 6 x 256, 4 heads, k 15, 192-d
    assert len(enc.encoder.layers) == 6
    for n_frames in (30, 47):
        with torch.no_grad():
            x = torch.randn(2, n_frames, 80)
            out = enc(x, torch.tensor([1.0, 0.6]))
            feats, _ = enc.frame_features(x)
        assert out.shape == (2, 1, 192)
        assert feats.shape == (2, (n_frames - 1) // 2, 6 * 256)


def test_every_block_output_is_concatenated(small):
    captured = []
    hooks = [
        layer.register_forward_hook(lambda m, i, o: captured.append(o[0]))
        for layer in small.encoder.layers
    ]
    x = torch.randn(2, 41, 20)
    lengths = torch.tensor([1.0, 0.75])
    with torch.no_grad():
        raw, frames = small.frame_features(x, lengths, normalize=False)
    for h in hooks:
        h.remove()
    assert len(captured) == SMALL["num_blocks"]
    d = SMALL["d_model"]
    keep = (torch.arange(raw.shape[1]) < frames.unsqueeze(1)).unsqueeze(-1)
    for k, block_out in enumerate(captured):
        assert torch.allclose(raw[..., k * d : (k + 1) * d], block_out * keep)


def test_every_block_reaches_the_pooling(small):
    """Removing any single block's slice of the concatenation (and only
    that: later blocks are untouched) changes the embedding, and the
    embedding's gradient w.r.t. every slice is non-zero."""
    x = torch.randn(2, 41, 20)
    feats, frames = small.frame_features(x)
    feats = feats.detach().requires_grad_()
    ref = small.pool(feats, frames)
    ref.pow(2).sum().backward()
    d = SMALL["d_model"]
    for k in range(SMALL["num_blocks"]):
        sl = slice(k * d, (k + 1) * d)
        assert feats.grad[..., sl].abs().sum() > 0
        cut = feats.detach().clone()
        cut[..., sl] = 0.0
        with torch.no_grad():
            out = small.pool(cut, frames)
        assert (out - ref).abs().max() > 1e-4


def test_gradients_reach_every_parameter(small):
    # The encoder's own final LayerNorm is removed: an unused parameter would
    # break DDP without find_unused_parameters.
    small.train()
    out = small(torch.randn(4, 33, 20), torch.tensor([1.0, 0.9, 0.8, 0.6]))
    out.pow(2).sum().backward()
    missing = [
        n
        for n, p in small.named_parameters()
        if p.grad is None or p.grad.abs().sum() == 0
    ]
    assert not missing


def test_padding_does_not_change_the_embedding(small):
    x = torch.randn(3, 50, 20)
    with torch.no_grad():
        alone = [small(x[i : i + 1, :n]) for i, n in enumerate((50, 37, 21))]
        padded = x.clone()
        padded[1, 37:] = 100.0 * torch.randn(13, 20)  # garbage in the padding
        padded[2, 21:] = -50.0
        batch = small(padded, torch.tensor([1.0, 37 / 50, 21 / 50]))
    for i in range(3):
        assert torch.allclose(batch[i], alone[i][0], atol=1e-5)


def test_lengths_none_means_full(small):
    x = torch.randn(2, 30, 20)
    with torch.no_grad():
        assert torch.allclose(small(x), small(x, torch.ones(2)), atol=1e-6)


def test_subsampling_lengths_and_errors():
    sub = ConvSubsampling(80, 8, factor=4)
    x = torch.randn(1, 31, 80)
    assert sub(x).shape[1] == int(sub.output_lengths(torch.tensor([31]))[0])
    assert ConvSubsampling(80, 8, factor=1)(x).shape == (1, 31, 8)
    with pytest.raises(ValueError, match="subsampling"):
        ConvSubsampling(80, 8, factor=3)
    assert ConvSubsampling(20, 8, factor=2)(torch.randn(1, 3, 20)).shape[1] == 1
    assert ConvSubsampling(20, 8, factor=4)(torch.randn(1, 7, 20)).shape[1] == 1
    enc = MFAConformer(**SMALL)
    with pytest.raises(ValueError, match="too short"):
        enc(torch.randn(1, 2, 20))


def _previous_frame_features(model, x, lengths=None):
    """``frame_features`` as it was before issue #14: no mask at all when
    every frame is kept, decided by a host-side ``bool(keep.all())``."""
    batch, n_frames = x.shape[0], x.shape[1]
    h = model.subsampling(x)
    t_sub = h.shape[1]
    if lengths is None:
        frames = torch.full((batch,), t_sub)
    else:
        abs_in = torch.round(lengths.float() * n_frames).long()
        frames = model.subsampling.output_lengths(abs_in).clamp(1, t_sub)
    keep = torch.arange(t_sub).unsqueeze(0) < frames.unsqueeze(1)
    pad_mask = None if bool(keep.all()) else ~keep
    h = model.input_dropout(h)
    pos = model.pos_enc(h)
    if pad_mask is not None:
        model._conv_keep[h.device] = keep.unsqueeze(1)
    try:
        _, _, hidden = model.encoder(
            h, src_key_padding_mask=pad_mask, pos_embs=pos
        )
    finally:
        model._conv_keep.pop(h.device, None)
    feats = model.norm(torch.cat(hidden[1:], dim=-1))
    return feats * keep.unsqueeze(-1).to(feats.dtype), frames


def test_mfa_conformer_padding_branch_free(small, monkeypatch):
    import sys

    x = torch.randn(3, 45, 20)
    cases = {
        "none": None,
        "full": torch.ones(3),
        "padded": torch.tensor([1.0, 0.8, 0.5]),
    }
    # Tensor-to-Python conversions from the package's own frames: each
    # one is a host sync on a GPU.
    syncs = []

    def counting(name, original):
        def wrapper(self, *args, **kwargs):
            frame = sys._getframe(1)
            module = frame.f_globals.get("__name__", "")
            if module.startswith("speechbrain_ssv"):
                syncs.append(f"{name} at {module}:{frame.f_lineno}")
            return original(self, *args, **kwargs)

        return wrapper

    for case, lengths in cases.items():
        with torch.no_grad():
            ref, ref_frames = _previous_frame_features(small, x, lengths)
            ref_emb = small.pool(ref, ref_frames)
            for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
                original = getattr(torch.Tensor, name)
                monkeypatch.setattr(
                    torch.Tensor, name, counting(name, original)
                )
            feats, frames = small.frame_features(x, lengths)
            emb = small(x, lengths)
            monkeypatch.undo()
        assert syncs == [], case
        assert torch.equal(frames, ref_frames), case
        # Identical, not merely close: an all-False mask is a no-op.
        assert torch.equal(feats, ref), case
        assert torch.equal(emb, ref_emb), case
        assert not small._conv_keep
    # The padded batch really did take the masked path of the old code.
    full, _ = _previous_frame_features(small, x, cases["full"])
    padded, _ = _previous_frame_features(small, x, cases["padded"])
    assert not torch.equal(full[2], padded[2])
