"""backscore engines: models and synthesizers. numpy in, numpy out; no av/aiortc/Ray types."""
