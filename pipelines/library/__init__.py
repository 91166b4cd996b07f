"""Music libraries and recommendation at run time (no training code; torch only for ``--model``).

* ``tracks``: :class:`~pipelines.library.tracks.TrackInfo`, one track of any library.
* ``sources``: open the library a command names (``catalog`` or a user's SQLite file).
* ``catalog``: the built-in 100-track catalog: build, cache, load, export, list.
* ``catalog_specs``: which tracks the catalog holds (styles, moods, seeds, titles).
* ``catalog_render``: compose, master and encode one catalog track (the build workers).
* ``index``: the user's own library, an SQLite index of analysed audio files.
* ``profile``: a video as the ranker sees it (mood over time, pace), label similarity, desired tempo.
* ``ranking``: score and rank a library's tracks for a video profile.
* ``recommender``: the learned recommender's features and model (load, predict).
* ``plot``: the ``recommend --plot`` PNG.
"""
