"""Adding a mask family is one class: a :class:`MaskFamily` subclass with ``names`` and
``build`` becomes a ``--density`` choice, a config value, a law that files record and rebuild,
and the law of a training corruption, with no other module edited.

The family defined here is the one many scanners run: a fully sampled centre plus a *fixed
number* of random phase-encode lines drawn without replacement (fastMRI's ``random`` masks draw
each line independently instead). Its keep probabilities are exact by symmetry."""

from __future__ import annotations

import math

import pytest
import torch

from mri_n2n.config import Config, ConfigError, check_values, resolve_config
from mri_n2n.corruptions import MRIUndersampling
from mri_n2n.masks import FamilySettings, MaskFamily, family_from_description, family_names, make_family
from mri_n2n.sampling import center_lines, hermitian_partner


# --- the whole new family: 44 lines ------------------------------------------------------------
class FixedCountLines(MaskFamily):
    """The centre plus exactly ``n`` of the other columns, uniformly without replacement."""

    names = ("lines_fixed",)
    lines = True

    @classmethod
    def build(cls, name, shape, settings: FamilySettings, *, hermitian):
        return cls(shape, settings.acceleration, settings.center_fraction)

    def __init__(self, shape, acceleration, center_fraction):
        super().__init__(shape)
        self.name, self.acceleration, self.center_fraction = "lines_fixed", acceleration, center_fraction
        w = self.shape[1]
        start, nc = center_lines(w, center_fraction)
        self.center = torch.zeros(w, dtype=torch.bool)
        self.center[start : start + nc] = True
        self.n = max(0, round(w / acceleration) - nc)

    def _column_p(self, real):
        out, n = int((~self.center).sum()), self.n
        p = torch.where(self.center, 1.0, n / out).double()
        if real:  # P(j or -j kept): 1 - P(neither) for two distinct outer columns
            mate = hermitian_partner(p.numel())
            both_out = ~self.center & ~self.center[mate] & (mate != torch.arange(p.numel()))
            p = torch.where(both_out, 1 - (out - n) * (out - n - 1) / (out * (out - 1)), p)
            p = torch.where(self.center[mate], 1.0, p)
        return p.float().expand(self.shape).clone()

    def keep_probability(self):
        return self._column_p(real=False)

    def real_keep_probability(self):
        return self._column_p(real=True)

    def _draw(self, b, g, device):
        outer = (~self.center).nonzero().flatten().to(device)
        scores = torch.rand((b, outer.numel()), generator=g, device=device)
        cols = self.center.to(device).expand(b, -1).clone()
        cols[torch.arange(b, device=device)[:, None], outer[scores.argsort(1)[:, : self.n]]] = True
        return cols[:, None, :].expand(b, *self.shape).clone()

    def params(self):
        return {"acceleration": self.acceleration, "center_fraction": self.center_fraction}
# ------------------------------------------------------------------------------------------------


def test_the_class_is_a_registered_family_that_rebuilds_from_its_description():
    assert "lines_fixed" in family_names()
    fam = make_family("lines_fixed", (16, 40), acceleration=4, center_fraction=0.1)
    assert isinstance(fam, FixedCountLines) and fam.shape == (16, 40)
    again = family_from_description(fam.describe())
    assert again == fam and isinstance(again, FixedCountLines)
    masks = fam.sample(5, generator=torch.Generator().manual_seed(0))
    assert masks.shape == (5, 16, 40) and bool((masks == masks[:, :1]).all())  # whole lines
    assert torch.equal(masks[:, 0].sum(1), torch.full((5,), 10))  # round(40 / 4) lines, every draw


def test_its_keep_probabilities_are_the_keep_rates():
    """Both laws the corruption uses (the mask's and its Hermitian completion's) match the rates
    of 20000 draws within 4 standard errors."""
    fam = make_family("lines_fixed", (4, 30), acceleration=3, center_fraction=0.1)
    m = fam.sample(20000, generator=torch.Generator().manual_seed(1))
    real = m | m.flip(-1).roll(1, -1)  # the completion: column j or its partner (-j)
    for law, draws in ((fam.keep_probability(), m), (fam.real_keep_probability(), real)):
        rate = draws.double().mean(0)
        se = (law.double() * (1 - law.double()) / draws.shape[0]).sqrt().clamp_min(1e-9)
        assert float(((rate - law.double()).abs() / se).max()) < 4.0
    assert math.isclose(fam.fraction, 10 / 30, rel_tol=1e-6)


def test_configs_and_the_cli_accept_it_and_a_corruption_trains_on_it():
    values = check_values({"density": "lines_fixed", "acceleration": 4, "center_fraction": 0.1})
    with pytest.raises(ConfigError, match="lines_not_registered"):
        check_values({"density": "lines_not_registered"})
    from mri_n2n.cli.train import build_parser

    args = build_parser().parse_args(["--density", "lines_fixed"])
    assert args.density == "lines_fixed"
    cfg, _ = resolve_config(Config(**values, complex=True, shift=0))
    corr = MRIUndersampling.from_config(cfg, (32, 32))
    assert isinstance(corr.family, FixedCountLines)
    clean = torch.rand(2, 1, 32, 32)
    pair = corr.pair(clean, generator=torch.Generator().manual_seed(0))
    assert pair.input.shape == (2, 2, 32, 32) and pair.target.shape == (2, 2, 32, 32)
