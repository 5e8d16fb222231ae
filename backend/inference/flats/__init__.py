"""Flats: split line art into closed regions and fill each with one flat colour from the model's output.

Flatting is the studio chore of bucket-filling every closed region of the line art. Three steps, all at
full canvas resolution and vectorised (no Python loop over pixels or regions), one module each:

- lines.py: which pixels are ink, measured on the drawing (soft pencil, anti-aliased and coloured lines,
  ink on transparent);
- regions.py: gap closing and segmentation (trapped balls of decreasing radii; every pixel gets a region,
  the fills of neighbouring regions meet under the lines; slivers merge into a neighbour), with
  labelops.py's whole-canvas label operations;
- fill.py: one colour per region (the median of the model's colour in CIE Lab) and the shading layer;
- crisp.py: the model's colour kept inside each region up to its lines (the pipeline's `color`).

Neighbouring regions may still get the same colour (e.g. two white areas); that is fine for flats, they
are then simply one fill area.
"""
from .config import MAX_GAP, MAX_PIXELS, FlatsConfig
from .crisp import crisp, crisp_margin
from .fills import MIN_SAMPLES, SAMPLE_PIXELS, Votes, fill, flats, paper_votes, plan_votes, regions_and_votes, \
    sample_stride, shading
from .lines import Ink, find_ink, grey
from .regions import segment
from .samples import bench_images

__all__ = ["MAX_GAP", "MAX_PIXELS", "MIN_SAMPLES", "SAMPLE_PIXELS", "FlatsConfig", "Ink", "Votes", "bench_images",
           "crisp", "crisp_margin", "fill", "find_ink", "flats", "grey", "paper_votes", "plan_votes",
           "regions_and_votes", "sample_stride", "segment", "shading"]
