from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobOptions(_message.Message):
    __slots__ = ("style", "seed", "faces")
    STYLE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    style: str
    seed: int
    faces: bool
    def __init__(self, style: _Optional[str] = ..., seed: _Optional[int] = ..., faces: _Optional[bool] = ...) -> None: ...

class MediaRequest(_message.Message):
    __slots__ = ("video", "filename", "options")
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    video: bytes
    filename: str
    options: JobOptions
    def __init__(self, video: _Optional[bytes] = ..., filename: _Optional[str] = ..., options: _Optional[_Union[JobOptions, _Mapping]] = ...) -> None: ...

class Window(_message.Message):
    __slots__ = ("start_s", "end_s", "valence", "arousal", "emotion", "confidence")
    START_S_FIELD_NUMBER: _ClassVar[int]
    END_S_FIELD_NUMBER: _ClassVar[int]
    VALENCE_FIELD_NUMBER: _ClassVar[int]
    AROUSAL_FIELD_NUMBER: _ClassVar[int]
    EMOTION_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    start_s: float
    end_s: float
    valence: float
    arousal: float
    emotion: str
    confidence: float
    def __init__(self, start_s: _Optional[float] = ..., end_s: _Optional[float] = ..., valence: _Optional[float] = ..., arousal: _Optional[float] = ..., emotion: _Optional[str] = ..., confidence: _Optional[float] = ...) -> None: ...

class Segment(_message.Message):
    __slots__ = ("start_s", "end_s", "emotion", "valence", "arousal", "confidence")
    START_S_FIELD_NUMBER: _ClassVar[int]
    END_S_FIELD_NUMBER: _ClassVar[int]
    EMOTION_FIELD_NUMBER: _ClassVar[int]
    VALENCE_FIELD_NUMBER: _ClassVar[int]
    AROUSAL_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    start_s: float
    end_s: float
    emotion: str
    valence: float
    arousal: float
    confidence: float
    def __init__(self, start_s: _Optional[float] = ..., end_s: _Optional[float] = ..., emotion: _Optional[str] = ..., valence: _Optional[float] = ..., arousal: _Optional[float] = ..., confidence: _Optional[float] = ...) -> None: ...

class AnalyzeReply(_message.Message):
    __slots__ = ("duration_s", "cuts_s", "windows", "segments", "timeline_json")
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    CUTS_S_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    TIMELINE_JSON_FIELD_NUMBER: _ClassVar[int]
    duration_s: float
    cuts_s: _containers.RepeatedScalarFieldContainer[float]
    windows: _containers.RepeatedCompositeFieldContainer[Window]
    segments: _containers.RepeatedCompositeFieldContainer[Segment]
    timeline_json: str
    def __init__(self, duration_s: _Optional[float] = ..., cuts_s: _Optional[_Iterable[float]] = ..., windows: _Optional[_Iterable[_Union[Window, _Mapping]]] = ..., segments: _Optional[_Iterable[_Union[Segment, _Mapping]]] = ..., timeline_json: _Optional[str] = ...) -> None: ...

class RecommendRequest(_message.Message):
    __slots__ = ("media", "top_k", "per_segment", "library")
    MEDIA_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    PER_SEGMENT_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    media: MediaRequest
    top_k: int
    per_segment: bool
    library: str
    def __init__(self, media: _Optional[_Union[MediaRequest, _Mapping]] = ..., top_k: _Optional[int] = ..., per_segment: _Optional[bool] = ..., library: _Optional[str] = ...) -> None: ...

class Recommendation(_message.Message):
    __slots__ = ("track_id", "title", "score", "reason", "components")
    class ComponentsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    track_id: int
    title: str
    score: float
    reason: str
    components: _containers.ScalarMap[str, float]
    def __init__(self, track_id: _Optional[int] = ..., title: _Optional[str] = ..., score: _Optional[float] = ..., reason: _Optional[str] = ..., components: _Optional[_Mapping[str, float]] = ...) -> None: ...

class SegmentRecommendations(_message.Message):
    __slots__ = ("start_s", "end_s", "emotion", "recommendations")
    START_S_FIELD_NUMBER: _ClassVar[int]
    END_S_FIELD_NUMBER: _ClassVar[int]
    EMOTION_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATIONS_FIELD_NUMBER: _ClassVar[int]
    start_s: float
    end_s: float
    emotion: str
    recommendations: _containers.RepeatedCompositeFieldContainer[Recommendation]
    def __init__(self, start_s: _Optional[float] = ..., end_s: _Optional[float] = ..., emotion: _Optional[str] = ..., recommendations: _Optional[_Iterable[_Union[Recommendation, _Mapping]]] = ...) -> None: ...

class RecommendReply(_message.Message):
    __slots__ = ("duration_s", "mood", "library_size", "recommendations", "segments")
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    MOOD_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_SIZE_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATIONS_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    duration_s: float
    mood: str
    library_size: int
    recommendations: _containers.RepeatedCompositeFieldContainer[Recommendation]
    segments: _containers.RepeatedCompositeFieldContainer[SegmentRecommendations]
    def __init__(self, duration_s: _Optional[float] = ..., mood: _Optional[str] = ..., library_size: _Optional[int] = ..., recommendations: _Optional[_Iterable[_Union[Recommendation, _Mapping]]] = ..., segments: _Optional[_Iterable[_Union[SegmentRecommendations, _Mapping]]] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("media", "loudness")
    MEDIA_FIELD_NUMBER: _ClassVar[int]
    LOUDNESS_FIELD_NUMBER: _ClassVar[int]
    media: MediaRequest
    loudness: str
    def __init__(self, media: _Optional[_Union[MediaRequest, _Mapping]] = ..., loudness: _Optional[str] = ...) -> None: ...

class Bar(_message.Message):
    __slots__ = ("start_s", "duration_s", "tempo_bpm", "key", "mode", "style", "emotion", "section", "transition", "chord", "instruments")
    START_S_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    TEMPO_BPM_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    STYLE_FIELD_NUMBER: _ClassVar[int]
    EMOTION_FIELD_NUMBER: _ClassVar[int]
    SECTION_FIELD_NUMBER: _ClassVar[int]
    TRANSITION_FIELD_NUMBER: _ClassVar[int]
    CHORD_FIELD_NUMBER: _ClassVar[int]
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    start_s: float
    duration_s: float
    tempo_bpm: float
    key: str
    mode: str
    style: str
    emotion: str
    section: int
    transition: bool
    chord: str
    instruments: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, start_s: _Optional[float] = ..., duration_s: _Optional[float] = ..., tempo_bpm: _Optional[float] = ..., key: _Optional[str] = ..., mode: _Optional[str] = ..., style: _Optional[str] = ..., emotion: _Optional[str] = ..., section: _Optional[int] = ..., transition: _Optional[bool] = ..., chord: _Optional[str] = ..., instruments: _Optional[_Iterable[str]] = ...) -> None: ...

class BgmChunk(_message.Message):
    __slots__ = ("index", "start_s", "duration_s", "pcm", "sample_rate", "channels", "bars")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    START_S_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    PCM_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    BARS_FIELD_NUMBER: _ClassVar[int]
    index: int
    start_s: float
    duration_s: float
    pcm: bytes
    sample_rate: int
    channels: int
    bars: _containers.RepeatedCompositeFieldContainer[Bar]
    def __init__(self, index: _Optional[int] = ..., start_s: _Optional[float] = ..., duration_s: _Optional[float] = ..., pcm: _Optional[bytes] = ..., sample_rate: _Optional[int] = ..., channels: _Optional[int] = ..., bars: _Optional[_Iterable[_Union[Bar, _Mapping]]] = ...) -> None: ...

class StartJobRequest(_message.Message):
    __slots__ = ("video", "filename", "options_json")
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_JSON_FIELD_NUMBER: _ClassVar[int]
    video: bytes
    filename: str
    options_json: str
    def __init__(self, video: _Optional[bytes] = ..., filename: _Optional[str] = ..., options_json: _Optional[str] = ...) -> None: ...

class JobRef(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class JobStatus(_message.Message):
    __slots__ = ("id", "kind", "state", "stage", "fraction", "eta_s", "stages_run", "error_type", "error_message", "results", "seq", "status_json")
    class ResultsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    ETA_S_FIELD_NUMBER: _ClassVar[int]
    STAGES_RUN_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    STATUS_JSON_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: str
    state: str
    stage: str
    fraction: float
    eta_s: float
    stages_run: _containers.RepeatedScalarFieldContainer[str]
    error_type: str
    error_message: str
    results: _containers.ScalarMap[str, str]
    seq: int
    status_json: str
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[str] = ..., state: _Optional[str] = ..., stage: _Optional[str] = ..., fraction: _Optional[float] = ..., eta_s: _Optional[float] = ..., stages_run: _Optional[_Iterable[str]] = ..., error_type: _Optional[str] = ..., error_message: _Optional[str] = ..., results: _Optional[_Mapping[str, str]] = ..., seq: _Optional[int] = ..., status_json: _Optional[str] = ...) -> None: ...

class StreamConfig(_message.Message):
    __slots__ = ("style", "seed", "mix_original", "engine")
    STYLE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    MIX_ORIGINAL_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    style: str
    seed: int
    mix_original: bool
    engine: str
    def __init__(self, style: _Optional[str] = ..., seed: _Optional[int] = ..., mix_original: _Optional[bool] = ..., engine: _Optional[str] = ...) -> None: ...

class VideoFrame(_message.Message):
    __slots__ = ("pts_s", "width", "height", "rgb", "gray", "gray_width", "gray_height")
    PTS_S_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    RGB_FIELD_NUMBER: _ClassVar[int]
    GRAY_FIELD_NUMBER: _ClassVar[int]
    GRAY_WIDTH_FIELD_NUMBER: _ClassVar[int]
    GRAY_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    pts_s: float
    width: int
    height: int
    rgb: bytes
    gray: bytes
    gray_width: int
    gray_height: int
    def __init__(self, pts_s: _Optional[float] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., rgb: _Optional[bytes] = ..., gray: _Optional[bytes] = ..., gray_width: _Optional[int] = ..., gray_height: _Optional[int] = ...) -> None: ...

class AudioChunk(_message.Message):
    __slots__ = ("pts_s", "pcm")
    PTS_S_FIELD_NUMBER: _ClassVar[int]
    PCM_FIELD_NUMBER: _ClassVar[int]
    pts_s: float
    pcm: bytes
    def __init__(self, pts_s: _Optional[float] = ..., pcm: _Optional[bytes] = ...) -> None: ...

class LiveInput(_message.Message):
    __slots__ = ("config", "video", "audio")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    config: StreamConfig
    video: VideoFrame
    audio: AudioChunk
    def __init__(self, config: _Optional[_Union[StreamConfig, _Mapping]] = ..., video: _Optional[_Union[VideoFrame, _Mapping]] = ..., audio: _Optional[_Union[AudioChunk, _Mapping]] = ...) -> None: ...

class MusicChunk(_message.Message):
    __slots__ = ("pts", "pcm")
    PTS_FIELD_NUMBER: _ClassVar[int]
    PCM_FIELD_NUMBER: _ClassVar[int]
    pts: int
    pcm: bytes
    def __init__(self, pts: _Optional[int] = ..., pcm: _Optional[bytes] = ...) -> None: ...

class MusicInfo(_message.Message):
    __slots__ = ("tempo_bpm", "key", "mode", "style", "emotion", "chord", "section", "transition")
    TEMPO_BPM_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    STYLE_FIELD_NUMBER: _ClassVar[int]
    EMOTION_FIELD_NUMBER: _ClassVar[int]
    CHORD_FIELD_NUMBER: _ClassVar[int]
    SECTION_FIELD_NUMBER: _ClassVar[int]
    TRANSITION_FIELD_NUMBER: _ClassVar[int]
    tempo_bpm: float
    key: str
    mode: str
    style: str
    emotion: str
    chord: str
    section: int
    transition: bool
    def __init__(self, tempo_bpm: _Optional[float] = ..., key: _Optional[str] = ..., mode: _Optional[str] = ..., style: _Optional[str] = ..., emotion: _Optional[str] = ..., chord: _Optional[str] = ..., section: _Optional[int] = ..., transition: _Optional[bool] = ...) -> None: ...

class MoodReport(_message.Message):
    __slots__ = ("session_id", "media_s", "valence", "arousal", "emotion", "confidence", "probs", "music", "underruns", "buffer_s", "windows", "mood_changes", "last_change_latency_s", "last_change_detect_s", "last_change_audible_s", "urgent_changes", "degraded", "sender_late_frames", "sender_max_late_ms")
    class ProbsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    MEDIA_S_FIELD_NUMBER: _ClassVar[int]
    VALENCE_FIELD_NUMBER: _ClassVar[int]
    AROUSAL_FIELD_NUMBER: _ClassVar[int]
    EMOTION_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    PROBS_FIELD_NUMBER: _ClassVar[int]
    MUSIC_FIELD_NUMBER: _ClassVar[int]
    UNDERRUNS_FIELD_NUMBER: _ClassVar[int]
    BUFFER_S_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    MOOD_CHANGES_FIELD_NUMBER: _ClassVar[int]
    LAST_CHANGE_LATENCY_S_FIELD_NUMBER: _ClassVar[int]
    LAST_CHANGE_DETECT_S_FIELD_NUMBER: _ClassVar[int]
    LAST_CHANGE_AUDIBLE_S_FIELD_NUMBER: _ClassVar[int]
    URGENT_CHANGES_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    SENDER_LATE_FRAMES_FIELD_NUMBER: _ClassVar[int]
    SENDER_MAX_LATE_MS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    media_s: float
    valence: float
    arousal: float
    emotion: str
    confidence: float
    probs: _containers.ScalarMap[str, float]
    music: MusicInfo
    underruns: int
    buffer_s: float
    windows: int
    mood_changes: int
    last_change_latency_s: float
    last_change_detect_s: float
    last_change_audible_s: float
    urgent_changes: int
    degraded: int
    sender_late_frames: int
    sender_max_late_ms: float
    def __init__(self, session_id: _Optional[str] = ..., media_s: _Optional[float] = ..., valence: _Optional[float] = ..., arousal: _Optional[float] = ..., emotion: _Optional[str] = ..., confidence: _Optional[float] = ..., probs: _Optional[_Mapping[str, float]] = ..., music: _Optional[_Union[MusicInfo, _Mapping]] = ..., underruns: _Optional[int] = ..., buffer_s: _Optional[float] = ..., windows: _Optional[int] = ..., mood_changes: _Optional[int] = ..., last_change_latency_s: _Optional[float] = ..., last_change_detect_s: _Optional[float] = ..., last_change_audible_s: _Optional[float] = ..., urgent_changes: _Optional[int] = ..., degraded: _Optional[int] = ..., sender_late_frames: _Optional[int] = ..., sender_max_late_ms: _Optional[float] = ...) -> None: ...

class LiveOutput(_message.Message):
    __slots__ = ("music", "mood")
    MUSIC_FIELD_NUMBER: _ClassVar[int]
    MOOD_FIELD_NUMBER: _ClassVar[int]
    music: MusicChunk
    mood: MoodReport
    def __init__(self, music: _Optional[_Union[MusicChunk, _Mapping]] = ..., mood: _Optional[_Union[MoodReport, _Mapping]] = ...) -> None: ...
