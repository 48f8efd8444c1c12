"""Data: sample sources, public dataset recipes, ingest (folders, whole-slide images), tissue
segmentation, patch extraction, the uint8 patch store and leakage-free splits."""
