"""AutoBuild (Mills et al., CVPR 2024) as a tested library: spaces, graphs, predictor,
loss, scoring, construction, search and loaders."""

__version__ = "0.1.0"
