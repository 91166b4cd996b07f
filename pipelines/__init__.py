"""backscore pipelines: stream logic (decode, windows, affect, segments, music plan, mix, mux)."""
