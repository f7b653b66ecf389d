"""Seeds and salts: one sample's independent draws come from its seed XOR a named salt
(:mod:`mri_n2n.seeding`), and the corruptions draw with exactly those salts."""

from __future__ import annotations

import torch

from mri_n2n.corruptions import MRIUndersampling
from mri_n2n.corruptions.mri import smooth_phase
from mri_n2n.fft import fft2c, to_complex
from mri_n2n.masks import make_family
from mri_n2n.seeding import SALT_ACQUISITION, SALT_NOISE, SALT_PHASE, seeded_generator


def test_the_salts_are_distinct_and_keep_their_values():
    # changing a value changes every seeded validation set and single acquisition
    assert (SALT_PHASE, SALT_NOISE, SALT_ACQUISITION) == (0x5EED, 0x401CE, 0xAC90)


def test_a_single_acquisition_is_drawn_with_the_named_salts():
    """A slice's one acquisition: mask from ``id ^ SALT_ACQUISITION``, its phase and noise from
    that seed salted again with ``SALT_PHASE`` and ``SALT_NOISE``."""
    size, std = 16, 0.05
    c = MRIUndersampling(make_family("exp", (size, size), fraction=0.3), complex_data=True, noise_std=std)
    clean = torch.rand(2, 1, size, size, generator=torch.Generator().manual_seed(0))
    ids = torch.tensor([123456789, 42])
    acq = c.acquire_once(clean, ids)
    for b, ident in enumerate(ids.tolist()):
        v = ident ^ SALT_ACQUISITION
        mask = c.draw_masks(1, seeded_generator(v))[0]
        z = to_complex(smooth_phase(clean[b : b + 1], seeded_generator(v ^ SALT_PHASE)))
        n = torch.randn((2, 1, size, size), generator=seeded_generator(v ^ SALT_NOISE))
        k = fft2c(z) + (std / 2**0.5) * torch.complex(n[0, 0], n[1, 0])
        assert torch.equal(acq.mask[b].bool(), mask)
        assert torch.allclose(acq.y[b, 0], k[0] * mask, atol=1e-5)
