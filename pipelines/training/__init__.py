"""Training the learned models: the AMT affect model and the track recommender.

* ``amt``: train and evaluate the AMT on a window dataset.
* ``amt_dataset``: the AMT's window datasets (read/write, labels, export from videos).
* ``recommender``: train and evaluate the recommender (:mod:`pipelines.library.recommender`).
* ``recommender_data``: its pairs CSV, per-video analysis cache and soft labels.
* ``recommender_pairs``: a synthetic labelled set of mood clips for it.
"""
