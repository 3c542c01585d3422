"""The HTML report (floor 9): one self-contained page of the catalogue, the verdicts and the
leaderboards in a store. `layerlab report` writes it."""
from .page import build_report, write_report

__all__ = ["build_report", "write_report"]
