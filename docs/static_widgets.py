"""nbconvert preprocessor for `make html`: show a panel's PNG snapshot instead of its live widget.

A lossviz panel is displayed with both a widget view and a PNG of its figure.  A static HTML page
has no Python to drive the sliders (and no network to fetch the widget renderer), so the export
keeps the picture and drops the widget view wherever both are present."""

from nbconvert.preprocessors import Preprocessor

WIDGET = "application/vnd.jupyter.widget-view+json"


class WidgetSnapshots(Preprocessor):
    def preprocess_cell(self, cell, resources, index):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET in data and "image/png" in data:
                del data[WIDGET]
        return cell, resources
