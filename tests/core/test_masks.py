"""The one check of every mask the pack reads (``check_mask_values``) and MASK normalisation."""
import pytest
import torch

from dreamsampler_core.masks import MASK_RANGE_SLACK, MaskError, as_mask4d, check_mask_values


@pytest.mark.parametrize("bad,words", [
    (float("nan"), "NaN"), (float("inf"), "NaN or infinite"), (2.0, "from 0 to 2"), (-0.5, "from -0.5"),
    (1.0 + 2 * MASK_RANGE_SLACK, "a mask runs from 0"),
])
def test_unusable_mask_values_are_refused(bad, words):
    m = torch.zeros(1, 8, 8)
    m[0, 3, 3] = bad
    for shape in ((1, 8, 8), (1, 1, 8, 8), (1, 1, 2, 8, 8)):      # MASK, 4-D noise mask, video noise mask
        with pytest.raises(MaskError, match=words.replace("(", r"\(")):
            check_mask_values(m.expand(*shape[:-2], 8, 8) if len(shape) < 5 else m[:, None, None].expand(shape))
    with pytest.raises(MaskError):
        as_mask4d(m)


def test_usable_masks_pass_and_overshoot_within_the_slack_is_clamped():
    m = torch.rand(2, 8, 8)
    m[0, 0, 0] = 1.0 + MASK_RANGE_SLACK / 2           # resampling overshoot
    m[1, 0, 0] = -MASK_RANGE_SLACK / 2
    check_mask_values(m)
    check_mask_values(torch.ones(1, 4, 4, dtype=torch.uint8))    # integer masks are read as numbers
    out = as_mask4d(m)
    assert out.shape == (2, 1, 8, 8) and float(out.min()) >= 0.0 and float(out.max()) <= 1.0
