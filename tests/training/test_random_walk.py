"""Random walk: the sparse walk against the dense transition-matrix power built by brute force."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from wsdeploy.training.tags.random_walk import (
    affinity_from_features,
    neighbour_offsets,
    propagate_cams,
    random_walk,
    transition_matrix,
)


def _dense_transition(affinity: torch.Tensor, radius: int, beta: float) -> torch.Tensor:
    """T = D^-1 (I + A^beta) of one image, from the definition: every pair of pixels of the grid
    within the radius, its affinity read where the pair is stored (at the pixel first in raster
    order). (N, N) float64."""
    _, h, w = affinity.shape
    offsets = {o: k for k, o in enumerate(neighbour_offsets(radius))}
    values = affinity.tolist()  # plain floats: the loops below stay fast
    n = h * w
    a = [[1.0 if p == q else 0.0 for q in range(n)] for p in range(n)]
    for p in range(n):
        for q in range(n):
            (y0, x0), (y1, x1) = divmod(p, w), divmod(q, w)
            if p == q or (y1 - y0) ** 2 + (x1 - x0) ** 2 >= radius ** 2:
                continue
            first, second = (p, q) if p < q else (q, p)
            (fy, fx), (sy, sx) = divmod(first, w), divmod(second, w)
            k = offsets[(sy - fy, sx - fx)]
            a[p][q] = values[k][fy][fx] ** beta
    dense = torch.tensor(a, dtype=torch.float64)
    return dense / dense.sum(dim=1, keepdim=True)


def test_offsets_are_the_half_plane_within_the_radius():
    assert neighbour_offsets(2) == [(0, 1), (1, -1), (1, 0), (1, 1)]
    assert len(neighbour_offsets(5)) == 34  # PSA's pairs at radius 5
    with pytest.raises(ValueError, match="radius"):
        neighbour_offsets(1)


@pytest.mark.parametrize("radius,beta,steps", [(2, 1.0, 1), (3, 3.0, 7), (4, 8.0, 40)])
def test_walk_equals_the_dense_matrix_power(radius, beta, steps):
    # float64 on a 5 x 6 grid: the sparse and the dense products add the same terms in a
    # different order, so they agree to ~1e-15 per step; 1e-12 leaves room for 40 steps.
    g = torch.Generator().manual_seed(0)
    h, w, c = 5, 6, 3
    d = len(neighbour_offsets(radius))
    affinity = torch.rand(2, d, h, w, generator=g, dtype=torch.float64)
    values = torch.rand(2, c, h, w, generator=g, dtype=torch.float64)
    out = random_walk(values, affinity, radius=radius, beta=beta, steps=steps)
    for b in range(2):
        dense = _dense_transition(affinity[b], radius, beta)
        expected = torch.linalg.matrix_power(dense, steps) @ values[b].reshape(c, -1).T  # (N, C)
        torch.testing.assert_close(out[b].reshape(c, -1).T, expected, rtol=0, atol=1e-12)


def test_transition_rows_sum_to_one_and_entries_outside_the_grid_are_ignored():
    g = torch.Generator().manual_seed(1)
    affinity = torch.rand(1, 12, 4, 5, generator=g, dtype=torch.float64)  # radius 3: 12 offsets
    t = transition_matrix(affinity, radius=3, beta=2.0).to_dense()
    torch.testing.assert_close(t.sum(1), torch.ones(20, dtype=torch.float64))
    torch.testing.assert_close(t, _dense_transition(affinity[0], 3, 2.0), rtol=0, atol=1e-15)
    garbage = affinity.clone()
    garbage[:, :, -1, :] = 0.123  # the last row's pairs that point down leave the grid
    garbage[:, 0, :, -1] = 0.456  # offset (0, 1) from the last column leaves the grid
    changed = transition_matrix(garbage, radius=3, beta=2.0).to_dense()
    torch.testing.assert_close(changed[-5:], _dense_transition(garbage[0], 3, 2.0)[-5:], rtol=0, atol=1e-15)


def test_float32_walk_of_256_steps_stays_close_to_float64():
    # 256 weighted means in float32: each adds ~6e-8 relative rounding; measured ~1e-6, 1e-5 asserted.
    g = torch.Generator().manual_seed(2)
    affinity = torch.rand(1, 34, 16, 16, generator=g, dtype=torch.float64)
    values = torch.rand(1, 4, 16, 16, generator=g, dtype=torch.float64)
    exact = random_walk(values, affinity, radius=5, beta=8.0, steps=256)
    fast = random_walk(values.float(), affinity.float(), radius=5, beta=8.0, steps=256)
    torch.testing.assert_close(fast.double(), exact, rtol=0, atol=1e-5)


def test_walk_stops_at_a_zero_affinity_boundary():
    # two halves joined by no affinity: each half converges to a constant of its own, never
    # leaking into the other; a symmetric A conserves sum_p deg(p) v(p) (deg = row sums of A)
    h, w = 4, 8
    feats = torch.zeros(1, 2, h, w, dtype=torch.float64)
    feats[:, :, :, 4:] = 1000.0  # exp(-1000) underflows to 0 across the boundary
    affinity = affinity_from_features(feats, radius=3)
    values = torch.zeros(1, 1, h, w, dtype=torch.float64)
    values[0, 0, 1, 1] = 1.0
    out = random_walk(values, affinity, radius=3, beta=1.0, steps=400)[0, 0]
    assert out[:, 4:].abs().max() == 0
    left = out[:, :4]
    assert float(left.max() - left.min()) < 1e-9
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(4), indexing="ij")
    deg = torch.tensor([[float(((ys - y) ** 2 + (xs - x) ** 2 < 9).sum()) for x in range(4)] for y in range(h)],
                       dtype=torch.float64)  # 1 (self) + neighbours within the half, affinity 1
    assert float((deg * left).sum()) == pytest.approx(float(deg[1, 1]), rel=1e-9)


def test_affinity_from_features_matches_the_pairwise_definition():
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(1, 3, 4, 5, generator=g, dtype=torch.float64)
    aff = affinity_from_features(feats, radius=3)
    for k, (dy, dx) in enumerate(neighbour_offsets(3)):
        for y in range(4):
            for x in range(5):
                inside = 0 <= y + dy < 4 and 0 <= x + dx < 5
                want = torch.exp(-(feats[0, :, y, x] - feats[0, :, y + dy, x + dx]).abs().mean()) if inside else 0.0
                assert float(aff[0, k, y, x]) == pytest.approx(float(want), abs=1e-12)


def test_propagate_pools_walks_and_upsamples_with_a_background_channel():
    g = torch.Generator().manual_seed(4)
    cams = torch.rand(2, 2, 30, 32, generator=g)  # 30 is not a multiple of the stride 4
    affinity = torch.rand(2, 12, 8, 8, generator=g)
    out = propagate_cams(cams, affinity, radius=3, beta=4.0, steps=5, background_alpha=2.0)
    assert out.shape == (2, 3, 30, 32)
    x = torch.cat([(1 - cams.amax(1, keepdim=True)) ** 2, cams], 1)
    pooled = F.avg_pool2d(F.pad(x, (0, 0, 0, 2)), 4)
    walked = random_walk(pooled, affinity, radius=3, beta=4.0, steps=5)
    want = F.interpolate(walked, scale_factor=4, mode="bilinear", align_corners=False)[:, :, :30]
    torch.testing.assert_close(out, want)
    with pytest.raises(ValueError, match="stride"):
        propagate_cams(cams[:, :, :20], affinity, radius=3, beta=4.0, steps=5)


def test_bad_inputs_raise_clear_errors():
    aff = torch.rand(1, 4, 3, 3)
    with pytest.raises(ValueError, match=r"\(B, 12, h, w\)"):
        random_walk(torch.rand(1, 1, 3, 3), aff, radius=3, beta=1.0, steps=1)
    with pytest.raises(ValueError, match="beta"):
        random_walk(torch.rand(1, 1, 3, 3), aff, radius=2, beta=0.0, steps=1)
    with pytest.raises(ValueError, match="steps"):
        random_walk(torch.rand(1, 1, 3, 3), aff, radius=2, beta=1.0, steps=-1)
    with pytest.raises(ValueError, match="match affinity"):
        random_walk(torch.rand(1, 1, 4, 3), aff, radius=2, beta=1.0, steps=1)
