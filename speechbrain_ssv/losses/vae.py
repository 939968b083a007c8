"""The VAE objective of l-mix (negative ELBO), as pure functions.

Equation numbers refer to Kang, Alam and Fathan, "Investigation on instance
mixup regularization strategies for self-supervised speaker representation
learning" (AAAI 2022 workshop). Eq. 5 is

``L_VAE = D_KL(q_phi(z|x) || p(z)) - E_q[log p_theta(x|z)]``

with a standard normal prior ``p(z)`` and a diagonal Gaussian posterior.
The paper does not state the likelihood; here ``p_theta(x|z)`` is a Gaussian
centred on the decoder output with a fixed standard deviation ``sigma`` (1
by default: the usual "sum of squared errors" VAE on unit-variance
features), and the expectation is estimated with one reparameterised sample
per utterance, as in Kingma and Welling (2014).

All terms are summed over the dimensions of one utterance and averaged over
the batch, so the loss is the per-utterance negative ELBO in nats.

The functions are wrapped in
:func:`~speechbrain_ssv.utils.precision.float32_loss`: under autocast
(``--precision bf16`` / ``fp16``) ``exp(logvar)`` and the sums over a whole
utterance's features, large numbers summed element by element, stay in
float32.

Authors
 * speechbrain-ssv developers 2026
"""

import math

import torch

from speechbrain_ssv.utils.precision import float32_loss


@float32_loss
def gaussian_kl(mu, logvar):
    """``D_KL(N(mu, diag(exp(logvar))) || N(0, I))``, the first term of Eq. 5.

    ``0.5 * sum_d (mu_d^2 + sigma_d^2 - 1 - log sigma_d^2)``, summed over the
    latent dimensions and averaged over the batch.

    Arguments
    ---------
    mu : torch.Tensor
        ``[batch, latent_dim]`` posterior means.
    logvar : torch.Tensor
        ``[batch, latent_dim]`` posterior log-variances.

    Returns
    -------
    torch.Tensor
        Scalar, in nats per utterance.

    Example
    -------
    >>> gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3))
    tensor(0.)
    >>> gaussian_kl(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, math.log(2.0)]]))
    tensor(0.6534)
    """
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)
    return kl.flatten(1).sum(1).mean()


@float32_loss
def gaussian_nll(x_hat, x, sigma=1.0):
    """``-log p(x | z)`` for ``p(x | z) = N(x; x_hat, sigma^2 I)``, the
    reconstruction term of Eq. 5 (one sample of ``z``).

    ``sum_i [(x_i - x_hat_i)^2 / (2 sigma^2) + 0.5 * log(2 pi sigma^2)]``,
    summed over the elements of an utterance (constant included, so it is a
    true negative log-likelihood) and averaged over the batch.

    Arguments
    ---------
    x_hat : torch.Tensor
        ``[batch, ...]`` decoder output (the likelihood's mean).
    x : torch.Tensor
        ``[batch, ...]`` target features, same shape.
    sigma : float
        Fixed standard deviation of the likelihood (> 0).

    Returns
    -------
    torch.Tensor
        Scalar, in nats per utterance.

    Example
    -------
    >>> x = torch.zeros(1, 2)
    >>> round(float(gaussian_nll(x, x)), 4) == round(math.log(2 * math.pi), 4)
    True
    >>> # 1 / (2 * 4) + 2 * 0.5 * log(2 pi 4) = 0.125 + 3.2242
    >>> round(float(gaussian_nll(torch.tensor([[1.0, 0.0]]), x, sigma=2.0)), 4)
    3.3492
    """
    if x_hat.shape != x.shape:
        raise ValueError(
            f"gaussian_nll: reconstruction {list(x_hat.shape)} and target "
            f"{list(x.shape)} differ in shape"
        )
    if sigma <= 0:
        raise ValueError(f"gaussian_nll: sigma={sigma}; expected > 0")
    const = 0.5 * math.log(2.0 * math.pi * sigma**2)
    per_elem = torch.square(x - x_hat) / (2.0 * sigma**2) + const
    return per_elem.flatten(1).sum(1).mean()


@float32_loss
def elbo_loss(x_hat, x, mu, logvar, beta=1.0, sigma=1.0):
    """Negative ELBO, Eq. 5: ``nll + beta * kl``.

    Arguments
    ---------
    x_hat : torch.Tensor
        ``[batch, ...]`` reconstruction.
    x : torch.Tensor
        ``[batch, ...]`` target features.
    mu : torch.Tensor
        ``[batch, latent_dim]`` posterior means.
    logvar : torch.Tensor
        ``[batch, latent_dim]`` posterior log-variances.
    beta : float
        Weight of the KL term (1 is Eq. 5; other values give a beta-VAE).
    sigma : float
        Standard deviation of the Gaussian likelihood.

    Returns
    -------
    dict
        ``loss`` (to minimise), ``kl`` and ``nll`` (scalars, nats per
        utterance).

    Example
    -------
    >>> x = torch.zeros(2, 4, 3)
    >>> out = elbo_loss(x + 1, x, torch.ones(2, 5), torch.zeros(2, 5), beta=0.5)
    >>> bool(torch.isclose(out["loss"], out["nll"] + 0.5 * out["kl"]))
    True
    >>> float(out["kl"])
    2.5
    """
    kl = gaussian_kl(mu, logvar)
    nll = gaussian_nll(x_hat, x, sigma)
    return {"loss": nll + beta * kl, "kl": kl, "nll": nll}
