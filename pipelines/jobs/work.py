"""What an async job does, by kind: the work that runs on the job pool, in the job's own folder.

=========  ===========================================  ===============================================
kind       stages (progress weights)                    files (role: name)
=========  ===========================================  ===============================================
analyze    thumbnails, analyse, write                   timeline: timeline.json, plot: plot.png
recommend  thumbnails, analyse, library, rank           recommendations: recommendations.json (and the
                                                        answer as the job's ``data``)
score      thumbnails, analyse, compose, mix, mux       video: scored.mp4, bgm: bgm.wav, timeline, plot
                                                        (``outputs`` chooses; also midi: score.mid and
                                                        stem_<part>: stem_<part>.wav with the composer)
=========  ===========================================  ===============================================

Every job that analyses keeps its analysis (:data:`ANALYSIS_FILE`, a pickle written by this server into
the job's private folder and read only from there) next to the upload, so a later job made ``from`` it
(:meth:`~pipelines.jobs.store.JobStore.derive`: the upload, the analysis and the thumbnails are linked into
the new job's folder) skips ``thumbnails`` and ``analyse`` and only makes the music, the mix and the outputs:
another style or seed, or a library track (``track``), on the same analysis. ``stages_run`` says which ran.

The music engine is made per job by ``music_engine(name, weights)`` (:func:`JobWork`'s argument; the
default is the one the CLI and the blocking endpoints use), so the jobs run on the same engines.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engines.base import MusicEngine
from pipelines.cancel import check_cancelled
from pipelines.errors import ConflictError, OptionError
from pipelines.jobs.record import Job
from pipelines.options import JobOptions

if TYPE_CHECKING:
    from pipelines.analysis.analyze import Analysis

KINDS = ("analyze", "recommend", "score")
#: Where a job keeps its analysis for jobs made from it.
ANALYSIS_FILE = "analysis.pkl"
#: Score outputs: role -> (file name, media type).
SCORE_FILES = {"video": ("scored.mp4", "video/mp4"), "bgm": ("bgm.wav", "audio/wav"),
               "timeline": ("timeline.json", "application/json"), "plot": ("plot.png", "image/png"),
               "midi": ("score.mid", "audio/midi")}
#: What ``outputs`` may name (``stems``: one WAV per part, as roles ``stem_<part>``).
OUTPUTS = (*SCORE_FILES, "stems")
DEFAULT_OUTPUTS = ("video", "bgm", "timeline", "plot")
#: Progress weights per kind (roughly each stage's share of the run time on the dev machine).
STAGES: dict[str, dict[str, float]] = {
    "analyze": {"thumbnails": 0.3, "analyse": 6.0, "write": 0.6},
    "recommend": {"thumbnails": 0.3, "analyse": 6.0, "library": 0.5, "rank": 0.2},
    "score": {"thumbnails": 0.3, "analyse": 6.0, "compose": 1.0, "mix": 1.0, "mux": 1.5},
}
#: The stages a job made from another one's analysis skips.
REUSED = ("thumbnails", "analyse")


@dataclass(frozen=True)
class JobSpec:
    """What a job was asked to do (validated when made: :class:`OptionError`)."""

    kind: str
    options: JobOptions = field(default_factory=JobOptions)
    #: A library track to put under the video instead of composing (score; ``options.library`` names it).
    track: int | None = None
    outputs: tuple[str, ...] = DEFAULT_OUTPUTS
    thumbnails: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise OptionError(f"unknown job kind {self.kind!r}; choose one of: {', '.join(KINDS)}")
        unknown = [o for o in self.outputs if o not in OUTPUTS]
        if unknown or not self.outputs:
            raise OptionError(f"outputs must name some of: {', '.join(OUTPUTS)} (got {', '.join(unknown) or 'none'})")
        if self.track is not None and (self.kind != "score" or isinstance(self.track, bool) or self.track < 1):
            raise OptionError("track (a library track's id, 1 or more) is for score jobs")
        if self.kind == "score" and ({"midi", "stems"} & set(self.outputs)):
            from pipelines.offline.stems import check_composer

            check_composer(self.options.engine, self.track)

    def stages(self, reuse: bool) -> dict[str, float]:
        """This job's stages: without thumbnails and analysis when it reuses another job's."""
        stages = STAGES[self.kind]
        if not self.thumbnails:
            stages = {k: v for k, v in stages.items() if k != "thumbnails"}
        return {k: v for k, v in stages.items() if k not in REUSED} if reuse else dict(stages)


def music_engine_default(name: str, weights: str | None) -> MusicEngine:
    from pipelines.offline.score import music_engine_for

    return music_engine_for(name, weights)


def load_analysis(folder: str) -> Analysis:
    path = os.path.join(folder, ANALYSIS_FILE)
    if not os.path.exists(path):
        raise ConflictError("the job's analysis is not ready yet (or the job failed before it): wait for its "
                            "analyse stage to finish")
    with open(path, "rb") as f:
        analysis: Analysis = pickle.load(f)  # written by this server, into the job's own folder
    return analysis


class JobWork:
    """Runs a job's work (see the module doc); ``music_engine(name, weights)`` makes its music engine."""

    def __init__(self, music_engine: Callable[[str, str | None], MusicEngine] = music_engine_default) -> None:
        self.music_engine = music_engine

    def __call__(self, job: Job, spec: JobSpec, reuse: bool) -> None:
        """Run ``spec`` for ``job`` in its folder (blocking; under the job's cancel token)."""
        from pipelines.offline.jobs import service_analysis

        options = service_analysis()
        prog = job.progress
        if reuse:
            analysis = load_analysis(job.folder)
        else:
            from pipelines.media.decode import probe

            probe(job.input_path, options.decode.limits)  # a bad upload fails before any other work
            if spec.thumbnails:
                from pipelines.jobs.media import keyframe_thumbnails

                prog.stage("thumbnails")
                job.set_thumbnails(keyframe_thumbnails(job.input_path, job.folder))
            analysis = self._analyse(job, spec, options)
        check_cancelled()
        if spec.kind == "analyze":
            self._analyze_outputs(job, analysis)
        elif spec.kind == "recommend":
            self._recommend(job, spec, analysis)
        else:
            self._score(job, spec, analysis, options)

    @staticmethod
    def _analyse(job: Job, spec: JobSpec, options: Any) -> Analysis:
        from pipelines.analysis.analyze import analyze
        from pipelines.analysis.engines import default_engines

        check_cancelled()
        job.progress.stage("analyse")
        analysis = analyze(job.input_path, default_engines(faces=spec.options.faces), options, job.progress.update)
        tmp = os.path.join(job.folder, f".{ANALYSIS_FILE}.partial")
        with open(tmp, "wb") as f:
            pickle.dump(analysis, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, os.path.join(job.folder, ANALYSIS_FILE))
        return analysis

    @staticmethod
    def _analyze_outputs(job: Job, analysis: Analysis) -> None:
        from pipelines.media.outputs import atomic_output
        from pipelines.offline.plot import plot_timeline
        from pipelines.offline.timeline import timeline_dict, write_timeline

        job.progress.stage("write")
        data = timeline_dict(analysis)
        data["input"]["path"] = None
        with atomic_output(os.path.join(job.folder, "timeline.json")) as tmp:
            write_timeline(tmp, data)
        job.add_file("timeline.json", "application/json", "timeline")
        with atomic_output(os.path.join(job.folder, "plot.png")) as tmp:
            plot_timeline(tmp, analysis, title=job.filename)
        job.add_file("plot.png", "image/png", "plot")
        job.progress.update(1.0)

    @staticmethod
    def _recommend(job: Job, spec: JobSpec, analysis: Analysis) -> None:
        from pipelines.offline.jobs import load_library_cached, recommend_from_analysis

        job.progress.stage("library")
        load_library_cached(spec.options.library)
        check_cancelled()
        job.progress.stage("rank")
        data = recommend_from_analysis(analysis, spec.options)
        with open(os.path.join(job.folder, "recommendations.json"), "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
        job.add_file("recommendations.json", "application/json", "recommendations")
        job.set_data(data)
        job.progress.update(1.0)

    def _score(self, job: Job, spec: JobSpec, analysis: Analysis, options: Any) -> None:
        from pipelines.offline.score import ScoreRequest, score

        o = spec.options
        want = set(spec.outputs)
        path = {role: os.path.join(job.folder, name) for role, (name, _) in SCORE_FILES.items() if role in want}
        stems = os.path.join(job.folder, "stems") if "stems" in want else None
        request = ScoreRequest(
            input_path=job.input_path, output_path=path.get("video"), timeline_path=path.get("timeline"),
            plot_path=path.get("plot"), bgm_path=path.get("bgm"), style=o.style, seed=o.seed, faces=o.faces,
            track_id=spec.track, library=o.library, engine=o.engine, weights=o.weights, analysis=options,
            midi_path=path.get("midi"), stems_dir=stems, loudness=o.loudness)
        engine = None if spec.track is not None else self.music_engine(o.engine, o.weights)
        result = score(request, music_engine=engine, progress=job.progress, analysis=analysis)
        if "timeline" in path:  # the client's view: no server paths
            data = dict(result.timeline)
            data["input"] = {**data.get("input", {}), "path": None}
            if "track" in data:  # the library by the name the client knows (its options), not the server's path
                data["track"] = {"id": spec.track}
            if "output" in data:
                data["output"] = {k: v for k, v in data["output"].items() if k != "path"}
            data.get("exports", {}).get("midi", {}).pop("path", None)
            data.get("exports", {}).get("stems", {}).pop("dir", None)
            with open(path["timeline"], "w", encoding="utf-8") as f:
                json.dump(data, f, indent=1)
        for role, (name, media_type) in SCORE_FILES.items():
            if role in path:
                job.add_file(name, media_type, role)
        if stems is not None:
            files: dict[str, str] = result.timeline.get("exports", {}).get("stems", {}).get("files", {})
            for part, file in files.items():
                name = f"stem_{part}.wav"
                os.replace(os.path.join(stems, file), os.path.join(job.folder, name))
                job.add_file(name, "audio/wav", f"stem_{part}")
            shutil.rmtree(stems, ignore_errors=True)


def recommendation_ids(data: dict[str, Any] | None) -> set[int]:
    """The track ids a recommend job's answer names (whole video and per segment)."""
    if not data:
        return set()
    recs = list(data.get("recommendations", []))
    for seg in data.get("segments", []):
        recs.extend(seg.get("recommendations", []))
    return {int(r["track_id"]) for r in recs if "track_id" in r}

