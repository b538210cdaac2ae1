"""A hand-made city whose coverage gaps are worked out by hand (metres, EPSG:4549 offsets):

- grid 1, a 3,000 m × 400 m strip [-1500, 1500] × [-200, 200], 1,200 people, cut in two by the
  disc of the active stall at (100, 0): the piece west of it is larger (1,600 m of strip
  against 1,400 m);
- grid 2, a 500 m × 400 m square [2000, 2500] × [-200, 200], 500 people, out of reach of the
  active stall (nearest point (2000, 0): 1,900 m from it) but almost covered by the SUSPENDED
  stall at its centre (2250, 0): only four corners of 431 m² stay out, slivers;
- grid 3, a 400 m × 5 m strip [-100, 300] × [285, 290], 40 people, inside the active disc but
  for its two ends (slivers of 572 m² each).
"""

from __future__ import annotations

import math

from geo_service.core.snapshot import Snapshot
from tests.handmade_city import Site, Square, build

R = 300.0
ACTIVE = (100.0, 0.0)
SUSPENDED = (2250.0, 0.0)
STRIP = Square(-1500, -200, 1500, 200, 1200)
BLOCK = Square(2000, -200, 2500, 200, 500)
THIN = Square(-100, 285, 300, 290, 40)


def city() -> Snapshot:
    return build(
        [STRIP, BLOCK, THIN],
        [Site(*ACTIVE), Site(*SUSPENDED, status="suspended")],
    )


def segment(r: float, d: float) -> float:
    """Area of the part of a disc of radius r beyond a line at distance d from its centre."""
    return r * r * math.acos(d / r) - d * math.sqrt(r * r - d * d)


def arc_integral(r: float, y0: float, y1: float) -> float:
    """∫ sqrt(r² - y²) dy from y0 to y1."""

    def f(y: float) -> float:
        return y / 2 * math.sqrt(r * r - y * y) + r * r / 2 * math.asin(y / r)

    return f(y1) - f(y0)


# Grid 1: the disc meets the strip in a band |y| <= 200 of the disc.
STRIP_COVERED = math.pi * R * R - 2 * segment(R, 200)
STRIP_WEST = (ACTIVE[0] - STRIP.minx) * 400 - STRIP_COVERED / 2
STRIP_EAST = (STRIP.maxx - ACTIVE[0]) * 400 - STRIP_COVERED / 2
# Grid 2 with the suspended stall counted: the disc (r 300) in a 500 × 400 box centred on it
# loses a segment beyond each side; the box corners (320 m away) are outside the disc.
BLOCK_COVERED_BY_SUSPENDED = math.pi * R * R - 2 * segment(R, 250) - 2 * segment(R, 200)
BLOCK_CORNER = (BLOCK.area - BLOCK_COVERED_BY_SUSPENDED) / 4
BLOCK_NEAREST = BLOCK.minx - ACTIVE[0]  # (2000, 0) from the active stall
# Grid 3: its ends beyond the disc, x < 100 - w(y) and x > 100 + w(y), w = sqrt(R² - y²).
THIN_WEST = (ACTIVE[0] - THIN.minx) * 5 - arc_integral(R, 285, 290)
THIN_EAST = (THIN.maxx - ACTIVE[0]) * 5 - arc_integral(R, 285, 290)
