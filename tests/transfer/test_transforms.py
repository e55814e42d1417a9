"""The radiograph augmentation: plausible X-ray variations only, in range, grey stays grey."""

import pytest
import torch
from torchvision.transforms import v2

from cnnlab.transfer.training.transforms import (
    GreyNoise,
    RandomGamma,
    train_transform,
    view_count,
)

SIZE = 64


def _grey(value=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    if value is None:  # a smooth grey image: a ramp with a bright blob
        y, x = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
        img = (x * 3 + 40 * torch.exp(-((x - 40) ** 2 + (y - 30) ** 2) / 200.0)).clamp(0, 255)
        img = img + torch.randint(0, 5, (SIZE, SIZE), generator=g)
    else:
        img = torch.full((SIZE, SIZE), value)
    return img.to(torch.uint8).expand(3, SIZE, SIZE).clone()


def _draws(transform, img, n=200):
    torch.manual_seed(0)
    return [transform(img) for _ in range(n)]


def test_radiograph_outputs_are_uint8_images_of_the_size_and_stay_grey():
    out = _draws(train_transform("radiograph", SIZE), _grey(), 100)
    assert all(o.dtype == torch.uint8 and o.shape == (3, SIZE, SIZE) for o in out)
    # grey in, grey out: no colour jitter, no colour noise
    assert all(torch.equal(o[0], o[1]) and torch.equal(o[1], o[2]) for o in out)
    assert sum(not torch.equal(o, _grey()) for o in out) >= 95  # it does vary the image


def _never_inverted(transform) -> bool:
    """A bright image (200) must stay bright in its centre, which every crop, shift and
    rotation keeps: solarize maps it to 55, posterize-and-invert policies below 100."""
    centre = slice(SIZE // 4, 3 * SIZE // 4)
    return all(int(o[:, centre, centre].min()) >= 100 for o in _draws(transform, _grey(200)))


def test_radiograph_never_solarizes_a_bright_image():
    assert _never_inverted(train_transform("radiograph", SIZE))
    # the check can fail: a policy that solarizes is caught
    assert not _never_inverted(v2.RandomSolarize(threshold=128, p=0.5))


def test_radiograph_holds_no_solarize_posterize_or_automatic_policy():
    transform = train_transform("radiograph", SIZE)
    kinds = {type(t).__name__ for t in transform.transforms}
    kinds |= {
        type(t).__name__
        for t in transform.transforms
        if isinstance(t, v2.RandomApply)
        for t in t.transforms
    }
    banned = {
        "RandomSolarize",
        "RandomPosterize",
        "TrivialAugmentWide",
        "RandAugment",
        "AutoAugment",
    }
    assert not kinds & banned
    assert {"RandomResizedCrop", "RandomAffine", "ColorJitter", "RandomGamma", "GreyNoise"} <= kinds


def test_gamma_is_monotone_and_keeps_the_ends():
    ramp = torch.arange(256, dtype=torch.uint8).view(1, 16, 16).expand(3, 16, 16)
    torch.manual_seed(1)
    for _ in range(20):
        out = RandomGamma(0.8, 1.25)(ramp)[0].flatten().int()
        assert out[0] == 0 and out[-1] == 255 and bool((out[1:] >= out[:-1]).all())


def test_grey_noise_is_bounded_and_the_same_in_every_channel():
    img = _grey(128)
    torch.manual_seed(2)
    noisy = [GreyNoise(0.03, p=1.0)(img) for _ in range(20)]
    assert any(not torch.equal(n, img) for n in noisy)
    for n in noisy:
        assert torch.equal(n[0], n[2]) and n.dtype == torch.uint8
        assert int((n.int() - 128).abs().max()) <= 0.03 * 255 * 5  # 5 sigma at most
    saturated = GreyNoise(0.03, p=1.0)(_grey(255))
    assert int(saturated.min()) >= 200 and int(saturated.max()) == 255  # clipped, not wrapped


@pytest.mark.parametrize(("augment", "views"), [("radiograph", 4), ("basic", 2)])
def test_the_feature_cache_samples_radiograph_views(augment, views):
    assert view_count(augment, 4) == views
