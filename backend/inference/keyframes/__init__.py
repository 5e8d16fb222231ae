"""Keyframe colouring (reference-based paint-bucket colourisation): one coloured frame or model sheet
colours the closed regions of other frames of the same character with exactly its colours.

- regions.py: each region of a line art described (position in the figure, size, shape, neighbours) and a
  keyframe's colour per region;
- match.py: the frame's regions matched to the keyframe's (costs, linear_sum_assignment, unsure regions);
- colouring.py: the public API: keyframe(), colour_frame(), colour_sequence().
See docs/keyframes.md for what it measures."""
from .colouring import (CHAINS, UNSURE_BELOW, FrameColours, Keyframe, colour_frame, colour_sequence, frame_regions,
                        keyframe, keyframe_outputs, nearest_colour, nearest_key)
from .match import UNSURE_COST, Assignment, match_regions
from .regions import Regions, describe, paint, region_colours

__all__ = ["CHAINS", "UNSURE_BELOW", "UNSURE_COST", "Assignment", "FrameColours", "Keyframe", "Regions",
           "colour_frame", "colour_sequence", "describe", "frame_regions", "keyframe", "keyframe_outputs",
           "match_regions", "nearest_colour", "nearest_key", "paint", "region_colours"]
