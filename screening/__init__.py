"""screening: X-ray parcel screening, region by region.

- ``regions``: pure box maths and region proposals on a transmission image.
- ``screen``: propose -> crop -> embed -> search -> merge -> decide (the verdict function is
  passed in: screening knows scores, the application knows thresholds).
- ``calibration``: screening thresholds measured on cleared scans.
- ``augment``: projected gallery variants and clutter references from cleared scans.
"""
