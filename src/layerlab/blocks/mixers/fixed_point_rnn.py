"""Fixed-Point RNNs: a dense linear RNN computed as the fixed point of a diagonal one
("Fixed-Point RNNs: Interpolating from Diagonal to Dense", Movahedi, Sarnthein, Muca Cirone & Orvieto)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError
from ...kernels.linear_recurrence import linear_recurrence
from ...registry import Paper, register
from .._common import init_linear, wide_dtype
from .base import Mixer, State


def gram_schmidt(u: Tensor) -> Tensor:
    """Rows of ``u`` (..., r, H) made orthonormal in order (classical Gram-Schmidt, r <= H)."""
    rows: list[Tensor] = []
    for j in range(u.shape[-2]):
        w = u[..., j, :]
        for q in rows:
            w = w - (w * q).sum(-1, keepdim=True) * q
        rows.append(F.normalize(w, dim=-1))
    return torch.stack(rows, dim=-2)


@register("mixer", "fixed_point_rnn",
          paper=Paper("Fixed-Point RNNs: Interpolating from Diagonal to Dense", 2025, "2503.10799"))
class FixedPointRNN(Mixer):
    r"""Fixed-Point RNN: iterate a parallel diagonal linear RNN whose input reads the previous
    iterate through a channel mixer; its fixed point is a dense linear RNN.

    Paper: Movahedi, Sarnthein, Muca Cirone & Orvieto, "Fixed-Point RNNs: Interpolating from
    Diagonal to Dense", 2025 (NeurIPS 2025; v1 "... From Diagonal to Dense in a Few
    Iterations"), arXiv:2503.10799 (Sec. 3).

    Equation, for input ``x_t`` in R^D and state ``h_t`` in R^H: a diagonal transition
    ``Lambda_t = diag(lambda_t)`` and a channel mixer ``M_t`` (dense in effect, cheap to apply),
    iterated over ``l = 1, 2, ...`` from ``h^0 = 0``::

        h^l_t = Lambda_t h^l_{t-1} + M_t h^{l-1}_t + B x_t        (a diagonal RNN in t, per l)
        y_t   = C h^L_t

    Each iteration is one parallel scan over the sequence. Its fixed point ``h* = lim h^l`` solves
    ``h*_t = Lambda_t h*_{t-1} + M_t h*_t + B x_t``, i.e. the dense linear RNN

        h*_t = A_t h*_{t-1} + (I - M_t)^{-1} B x_t,    A_t = (I - M_t)^{-1} Lambda_t,

    whose transition mixes channels although every iteration is diagonal (in the paper's
    notation ``A_t = Q_t^{-1} Lambda_t`` with ``Q_t = I - M_t``). One iteration is the diagonal
    RNN ``h_t = Lambda_t h_{t-1} + B x_t``; more iterations interpolate towards the dense one, at a
    fixed number of parameters. The iteration converges when every ``M_t`` is a contraction
    (the map is block lower-triangular in time with diagonal blocks ``M_t``, so its spectral
    radius is ``max_t rho(M_t)``); here ``||M_t||_2 <= gamma < 1`` by construction.

    Parameterization (Mamba-like, input dependent):

    - ``lambda_t = sigmoid(W_lambda x_t + b_lambda)`` in (0, 1), or ``2 sigmoid(.) - 1`` in (-1, 1)
      with ``negative_eigenvalues`` (the range that state tracking needs; Grazzi et al. 2024,
      arXiv:2411.12537).
    - ``M_t = sum_{j=1..r} beta_{t,j} k_{t,j} v_{t,j}^T = K_t diag(beta_t) V_t^T``, where the columns
      ``k_{t,j}`` of ``K_t`` are ``W_k x_t`` (r vectors) orthonormalized by Gram-Schmidt, likewise
      ``v_{t,j}`` from ``W_v x_t``, and ``beta_{t,j} = gamma tanh(w_j . x_t)``: rank ``r``, non-symmetric
      (so ``(I - M_t)^{-1}`` can rotate), with singular values ``|beta_{t,j}|``, so
      ``||M_t||_2 = max_j |beta_{t,j}| < gamma``. (A rotation by 2 pi / 3, which counting mod 3
      needs, takes ``||M_t||_2 >= sqrt(3) / 2`` in its plane: ``(I - M)^{-1} Lambda = R`` with
      ``Lambda = -c`` gives ``|eig(M)|^2 = 1 - c + c^2``.)

    Shape: ``(B, L, D) -> (B, L, D)``, causal.

    ``iterations`` (``l_max``): ``None`` (default) iterates to the fixed point (until the largest
    change is below ``tol`` times the largest entry, at most ``max_iterations`` times; the state
    is then ``h*`` alone, (B, H)); an integer ``K`` runs exactly K iterations (the state is then
    the K iterates, (B, K, H): each iterate is a recurrence of its own).

    Modes: ``"scan"`` (default): iteration by iteration, each a diagonal scan over the sequence
    (:func:`layerlab.kernels.linear_recurrence.linear_recurrence`), differentiated through the
    unrolled iterations; ``"reference"``: token by token, the dense recurrence
    ``h_t = (I - M_t)^{-1} (Lambda_t h_{t-1} + B x_t)`` solved exactly at each step (``iterations
    = None``) or the K iterates advanced together (integer K).

    Initialization (ours): ``W_lambda`` fan-in uniform and ``b_lambda`` so that ``lambda`` starts
    around 0.9 (``sigmoid(2.2)``; ``0.9`` of the range in the negative case); ``W_k, W_v, w, B, C``
    fan-in uniform.

    Options: ``d_state`` (H, default ``d_model``), ``rank`` (r, default 2), ``gamma`` (contraction
    bound, default 0.9, in (0, 1)), ``iterations`` (None or >= 1), ``max_iterations`` (default 100),
    ``tol`` (default 1e-12 relative in float64, 1e-6 otherwise: ``None``), ``negative_eigenvalues``
    (default True), ``device``, ``dtype``.

    Deviations: the paper's FP-Mamba keeps matrix states and Mamba's full block (gating, short
    convolution), uses structured mixers (diagonal + low rank, Householder, Kronecker), a
    shifted dependence on the previous iterate for copying, and implicit differentiation at the
    fixed point; here the state is a vector, the mixer the contractive low-rank form above, and
    gradients flow through the unrolled iterations (at convergence they equal the implicit ones).
    """

    modes = ("scan", "reference")
    recurrent = True

    def __init__(
        self,
        d_model: int,
        *,
        d_state: int | None = None,
        rank: int = 2,
        gamma: float = 0.9,
        iterations: int | None = None,
        max_iterations: int = 100,
        tol: float | None = None,
        negative_eigenvalues: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(d_model)
        H = d_model if d_state is None else int(d_state)
        if H < 1:
            raise ConfigError(f"fixed_point_rnn: d_state (H) must be >= 1 (or None for d_model), got {d_state}")
        if isinstance(rank, bool) or int(rank) != rank or rank < 1:
            raise ConfigError(f"fixed_point_rnn: rank (r, of the channel mixer) must be an integer >= 1, got {rank!r}")
        if rank > H:
            raise ConfigError(f"fixed_point_rnn: rank ({rank}) must be <= d_state ({H}): the mixer's r directions "
                              "are orthonormal in R^H")
        if not 0.0 < gamma < 1.0:
            raise ConfigError(f"fixed_point_rnn: gamma bounds ||M_t|| and must be in (0, 1) for the iteration to "
                              f"converge (e.g. 0.9), got {gamma}")
        if iterations is not None and (isinstance(iterations, bool) or int(iterations) != iterations
                                       or iterations < 1):
            raise ConfigError(f"fixed_point_rnn: iterations must be None (to the fixed point) or an integer >= 1 "
                              f"(1 = the diagonal RNN), got {iterations!r}")
        if int(max_iterations) < 1:
            raise ConfigError(f"fixed_point_rnn: max_iterations must be >= 1, got {max_iterations}")
        if tol is not None and not tol > 0:
            raise ConfigError(f"fixed_point_rnn: tol must be > 0 (or None for the dtype's default), got {tol}")
        factory = {"device": device, "dtype": dtype}
        self.d_state, self.rank, self.gamma = H, int(rank), float(gamma)
        self.iterations = None if iterations is None else int(iterations)
        self.max_iterations, self.tol = int(max_iterations), tol
        self.negative_eigenvalues = bool(negative_eigenvalues)
        D, r = d_model, self.rank
        self.lam = nn.Linear(D, H, **factory)
        self.k = nn.Linear(D, r * H, bias=False, **factory)
        self.v = nn.Linear(D, r * H, bias=False, **factory)
        self.beta = nn.Linear(D, r, bias=False, **factory)
        self.B = nn.Linear(D, H, bias=False, **factory)
        self.C = nn.Linear(H, D, bias=False, **factory)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for linear in (self.lam, self.k, self.v, self.beta, self.B, self.C):
            init_linear(linear)
        with torch.no_grad():
            # lambda ~ 0.9 at init: sigmoid(2.2) = 0.90; with the (-1, 1) range, 2 sigmoid(2.94) - 1 = 0.9
            self.lam.bias.fill_(2.94 if self.negative_eigenvalues else 2.2)

    # --- the recurrence's pieces ------------------------------------------------------------
    def pieces(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """For inputs x (..., D): lambda (..., H), k, v (..., r, H) orthonormal rows, beta (..., r), B x (..., H);
        float32 or wider."""
        wide = wide_dtype(x.dtype)
        s = torch.sigmoid(self.lam(x).to(wide))
        lam = 2.0 * s - 1.0 if self.negative_eigenvalues else s
        k = gram_schmidt(self.k(x).to(wide).unflatten(-1, (self.rank, self.d_state)))
        v = gram_schmidt(self.v(x).to(wide).unflatten(-1, (self.rank, self.d_state)))
        beta = self.gamma * torch.tanh(self.beta(x).to(wide))
        return lam, k, v, beta, self.B(x).to(wide)

    @staticmethod
    def mix(k: Tensor, v: Tensor, beta: Tensor, h: Tensor) -> Tensor:
        """``M h = sum_j beta_j k_j (v_j . h)``."""
        return ((beta * (v * h.unsqueeze(-2)).sum(-1)).unsqueeze(-1) * k).sum(-2)

    def mixer_matrix(self, x: Tensor) -> Tensor:
        """``M_t`` (..., H, H) for inputs x (..., D) (for tests and the dense reference)."""
        _, k, v, beta, _ = self.pieces(x)
        return torch.einsum("...j,...ja,...jb->...ab", beta, k, v)

    def dense_transition(self, x: Tensor) -> Tensor:
        """The fixed point's transition ``A_t = (I - M_t)^{-1} Lambda_t`` (..., H, H)."""
        lam = self.pieces(x)[0]
        eye = torch.eye(self.d_state, dtype=lam.dtype, device=lam.device)
        return torch.linalg.solve(eye - self.mixer_matrix(x), torch.diag_embed(lam))

    def _tol(self, dtype: torch.dtype) -> float:
        return self.tol if self.tol is not None else (1e-12 if dtype == torch.float64 else 1e-6)

    # --- forward ------------------------------------------------------------------------------
    def _forward(self, x: Tensor, mode: str) -> Tensor:
        if mode == "reference":
            return self.step_loop(x)
        lam, k, v, beta, bx = self.pieces(x)
        h = torch.zeros_like(bx)
        n = self.iterations if self.iterations is not None else self.max_iterations
        tol = self._tol(bx.dtype)
        for i in range(n):
            new = linear_recurrence(lam, self.mix(k, v, beta, h) + bx)
            converged = (self.iterations is None and
                         ((new - h).abs().max() <= tol * new.abs().max().clamp_min(1e-30)).item())
            h = new
            if converged:
                break
        self.last_iterations = i + 1  # how many scans the last forward took (a diagnostic)
        return self.C(h.to(x.dtype))

    # --- token by token -----------------------------------------------------------------------
    def init_state(self, batch_size: int, *, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> State:
        f = self._factory(device, dtype)
        shape = (batch_size, self.d_state) if self.iterations is None else (batch_size, self.iterations, self.d_state)
        return (torch.zeros(shape, device=f["device"], dtype=wide_dtype(f["dtype"])),)

    def _step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        (h,) = state
        lam, k, v, beta, bx = self.pieces(x_t)
        if self.iterations is None:  # the dense recurrence, solved exactly
            eye = torch.eye(self.d_state, dtype=h.dtype, device=h.device)
            M = torch.einsum("...j,...ja,...jb->...ab", beta, k, v)
            h = torch.linalg.solve(eye - M, (lam * h + bx).unsqueeze(-1)).squeeze(-1)
            return self.C(h.to(x_t.dtype)), (h,)
        below = torch.zeros_like(bx)  # h^{l-1}_t, with h^0 = 0
        new = []
        for level in range(self.iterations):
            below = lam * h[:, level] + self.mix(k, v, beta, below) + bx
            new.append(below)
        return self.C(below.to(x_t.dtype)), (torch.stack(new, dim=1),)

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, d_state={self.d_state}, rank={self.rank}, gamma={self.gamma}, "
                f"iterations={self.iterations}, negative_eigenvalues={self.negative_eigenvalues}, modes={self.modes}")
