"""The two GRU networks. Inputs follow the feature contracts in ``streams.scoring.features``."""

from __future__ import annotations

import torch
from torch import nn

from streams.scoring.features import GLUCOSE, GLUCOSE_CENTER, VITALS

HORIZONS_MIN = (15, 30, 45, 60)
HYPO_THRESHOLDS = (70.0, 54.0)


class GlucoseGRU(nn.Module):
    """CGM (36 x 6) -> glucose forecasts at 15/30/45/60 min and P(< 70), P(< 54) in 30 min.

    The forecast is the latest (carried-forward) glucose times a learned log-ratio, so the
    network learns the change, not the level.
    """

    def __init__(self, hidden: int = 32, layers: int = 1) -> None:
        super().__init__()
        self.config = {"hidden": hidden, "layers": layers}
        self.gru = nn.GRU(len(GLUCOSE.channels), hidden, layers, batch_first=True)
        self.head = nn.Sequential(
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Linear(hidden, len(HORIZONS_MIN) + 2),
        )

    def raw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log forecast ratio to 140 mg/dL, hypo logits): what training fits."""
        _, h = self.gru(x)
        z = self.head(h[-1])
        return x[:, -1, 0:1] + z[:, : len(HORIZONS_MIN)], z[:, len(HORIZONS_MIN) :]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(forecast mg/dL at 15/30/45/60 min, P(< 70) and P(< 54) within 30 min)."""
        log_forecast, logits = self.raw(x)
        return GLUCOSE_CENTER * torch.exp(log_forecast), torch.sigmoid(logits)


class DeteriorationGRU(nn.Module):
    """Vitals (24 x 19) -> P(deterioration within the horizon)."""

    def __init__(self, hidden: int = 32, layers: int = 1) -> None:
        super().__init__()
        self.config = {"hidden": hidden, "layers": layers}
        self.gru = nn.GRU(len(VITALS.channels), hidden, layers, batch_first=True)
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        _, h = self.gru(x)
        logit: torch.Tensor = self.head(h[-1])
        return logit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """P(deterioration within the horizon), shape (batch, 1)."""
        return torch.sigmoid(self.raw(x))


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def gru_flops(model: nn.Module, steps: int) -> int:
    """Multiply-adds x 2 per sequence: the GRU's three gates per step, plus the head."""
    flops = 0
    for module in model.modules():
        if isinstance(module, nn.GRU):
            h = module.hidden_size
            for layer in range(module.num_layers):
                i = module.input_size if layer == 0 else h
                flops += steps * 2 * 3 * (i * h + h * h)
        elif isinstance(module, nn.Linear):
            flops += 2 * module.in_features * module.out_features
    return flops
