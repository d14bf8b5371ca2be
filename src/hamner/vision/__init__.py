"""Images to visual features: loading, backbones, detectors, region pooling, geometry and the feature cache."""
