"""Log-mel audio features built from core TensorFlow ops only.

The functions here turn a WAV file into a small log-mel spectrogram. They use
`tf.audio.decode_wav`, `tf.signal.stft` and `tf.signal.linear_to_mel_weight_matrix`
only, so they run eagerly and inside `tf.data.Dataset.map` (graph mode) with the
same result. The spectrogram is computed in float64 and cast at the end, which
keeps the features bit-stable across CPUs (the AV-Digits builder quantises them).

Defaults: 1.0 s clips at 8 kHz (8000 samples), 256-sample Hann frames (32 ms)
every 160 samples (20 ms), a 256-point FFT and 32 mel bins from 20 Hz to 4 kHz,
giving features of shape (49, 32). The log offset 1e-3 puts digital silence (the
zero padding) at log(1e-3) = -6.9, just under the recordings' own noise floor.
Needs TensorFlow installed (any Keras backend).
"""

from keras_gblend.common.tf_gate import require_tensorflow

tf = require_tensorflow("keras_gblend.data.audio (log-mel audio features)")

SAMPLE_RATE = 8000
CLIP_SECONDS = 1.0
NUM_SAMPLES = int(SAMPLE_RATE * CLIP_SECONDS)
FRAME_LENGTH = 256
FRAME_STEP = 160
FFT_LENGTH = 256
NUM_MEL_BINS = 32
LOWER_EDGE_HERTZ = 20.0
UPPER_EDGE_HERTZ = 4000.0
LOG_OFFSET = 1e-3
NUM_FRAMES = 1 + (NUM_SAMPLES - FRAME_LENGTH) // FRAME_STEP


def decode_wav(contents, sample_rate=SAMPLE_RATE):
    """Decodes the bytes of a 16-bit PCM WAV file into a mono waveform.

    Args:
        contents: scalar string tensor (or `bytes`) holding a whole WAV file.
        sample_rate: the sample rate the file must have, in Hz.

    Returns:
        A float32 tensor of shape `(num_samples,)` with values in [-1, 1). A
        multi-channel file is reduced to its first channel.

    Raises:
        tf.errors.InvalidArgumentError: if the file's sample rate differs from
            `sample_rate` (raised when the op runs, also inside `Dataset.map`).

    Example:
        >>> contents = tf.io.read_file("tests/fixtures/wav/0_george_0.wav")
        >>> decode_wav(contents).dtype
        tf.float32
    """
    audio, rate = tf.audio.decode_wav(contents, desired_channels=1)
    check = tf.debugging.assert_equal(
        rate,
        tf.constant(sample_rate, tf.int32),
        message=f"decode_wav: expected sample_rate={sample_rate} Hz, the WAV has",
    )
    with tf.control_dependencies([check]):
        return tf.identity(audio[:, 0])


def fix_length(waveform, num_samples=NUM_SAMPLES):
    """Pads with trailing zeros or crops a waveform to exactly `num_samples`.

    Cropping keeps the first `num_samples` samples, so the result is deterministic.

    Args:
        waveform: tensor of shape `(length,)`.
        num_samples: the output length, a positive int.

    Returns:
        A tensor of shape `(num_samples,)` and the dtype of `waveform`.

    Raises:
        ValueError: if `num_samples` is not a positive int.

    Example:
        >>> fix_length(tf.ones([3]), 5).numpy()
        array([1., 1., 1., 0., 0.], dtype=float32)
    """
    if not isinstance(num_samples, int) or num_samples <= 0:
        raise ValueError(
            f"`num_samples` must be a positive int. Received {num_samples!r}."
        )
    waveform = tf.convert_to_tensor(waveform)[:num_samples]
    padding = num_samples - tf.shape(waveform)[0]
    waveform = tf.pad(waveform, [[0, padding]])
    return tf.ensure_shape(waveform, [num_samples])


def log_mel_spectrogram(
    waveform,
    sample_rate=SAMPLE_RATE,
    frame_length=FRAME_LENGTH,
    frame_step=FRAME_STEP,
    fft_length=FFT_LENGTH,
    num_mel_bins=NUM_MEL_BINS,
    lower_edge_hertz=LOWER_EDGE_HERTZ,
    upper_edge_hertz=UPPER_EDGE_HERTZ,
    log_offset=LOG_OFFSET,
    dtype=tf.float32,
):
    """Computes `log(mel(|STFT(waveform)|) + log_offset)`.

    Frames are Hann-windowed and not padded at the end, so a waveform of
    `n` samples gives `1 + (n - frame_length) // frame_step` frames. The work is
    done in float64; the result is cast to `dtype`.

    Args:
        waveform: float tensor of shape `(num_samples,)`.
        sample_rate: sample rate of `waveform` in Hz.
        frame_length: STFT window length in samples.
        frame_step: hop between frames in samples.
        fft_length: FFT size; gives `fft_length // 2 + 1` linear bins.
        num_mel_bins: number of mel bands.
        lower_edge_hertz: lower edge of the lowest mel band.
        upper_edge_hertz: upper edge of the highest mel band, at most
            `sample_rate / 2`.
        log_offset: positive constant added before the log; silence maps to
            `log(log_offset)`.
        dtype: dtype of the result.

    Returns:
        A tensor of shape `(frames, num_mel_bins)` and dtype `dtype`.

    Raises:
        ValueError: if `upper_edge_hertz` exceeds the Nyquist frequency or
            `log_offset` is not positive.

    Example:
        >>> log_mel_spectrogram(tf.zeros([NUM_SAMPLES])).shape
        TensorShape([49, 32])
    """
    if log_offset <= 0:
        raise ValueError(f"`log_offset` must be positive. Received {log_offset!r}.")
    weights = _mel_matrix(
        sample_rate, fft_length, num_mel_bins, lower_edge_hertz, upper_edge_hertz
    )
    return _log_mel(
        waveform,
        weights,
        tf.signal.hann_window,
        frame_length,
        frame_step,
        fft_length,
        log_offset,
        dtype,
    )


def _mel_matrix(sample_rate, fft_length, num_mel_bins, lower_hz, upper_hz):
    if upper_hz > sample_rate / 2:
        raise ValueError(
            "`upper_edge_hertz` must be at most sample_rate / 2 = "
            f"{sample_rate / 2}. Received {upper_hz!r}."
        )
    return tf.signal.linear_to_mel_weight_matrix(
        num_mel_bins=num_mel_bins,
        num_spectrogram_bins=fft_length // 2 + 1,
        sample_rate=sample_rate,
        lower_edge_hertz=lower_hz,
        upper_edge_hertz=upper_hz,
        dtype=tf.float64,
    )


def _log_mel(
    waveform,
    weights,
    window_fn,
    frame_length,
    frame_step,
    fft_length,
    log_offset,
    dtype,
):
    """`log(|STFT| @ weights + log_offset)` in float64, cast to `dtype`."""
    stft = tf.signal.stft(
        tf.cast(waveform, tf.float64),
        frame_length=frame_length,
        frame_step=frame_step,
        fft_length=fft_length,
        window_fn=window_fn,
    )
    mel = tf.matmul(tf.abs(stft), weights)
    return tf.cast(tf.math.log(mel + log_offset), dtype)


def wav_file_to_log_mel(path, num_samples=NUM_SAMPLES, **feature_kwargs):
    """Reads a WAV file and returns its fixed-length log-mel spectrogram.

    Args:
        path: scalar string tensor or `str`, the WAV file's path.
        num_samples: clip length in samples (see `fix_length`).
        **feature_kwargs: keyword arguments for `log_mel_spectrogram`
            (`sample_rate` is also checked against the file).

    Returns:
        A tensor of shape `(frames, num_mel_bins)`; `(49, 32)` float32 with the
        defaults.

    Raises:
        tf.errors.InvalidArgumentError: if the file's sample rate is wrong.

    Example:
        >>> wav_file_to_log_mel("tests/fixtures/wav/0_george_0.wav").shape
        TensorShape([49, 32])
    """
    sample_rate = feature_kwargs.get("sample_rate", SAMPLE_RATE)
    waveform = decode_wav(tf.io.read_file(path), sample_rate=sample_rate)
    return log_mel_spectrogram(fix_length(waveform, num_samples), **feature_kwargs)


def make_audio_map_fn(num_samples=NUM_SAMPLES, **feature_kwargs):
    """Returns a `Dataset.map` function from a WAV path to its log-mel features.

    The same features as `wav_file_to_log_mel`, bit for bit; the mel matrix and
    the window are computed once, when the function is made, not per clip.

    Args:
        num_samples: clip length in samples.
        **feature_kwargs: keyword arguments for `log_mel_spectrogram`.

    Returns:
        A function `path -> features` with the output of `wav_file_to_log_mel`.

    Example:
        >>> paths = tf.data.Dataset.from_tensor_slices(
        ...     ["tests/fixtures/wav/0_george_0.wav"])
        >>> next(iter(paths.map(make_audio_map_fn()))).shape
        TensorShape([49, 32])
    """

    options = dict(
        sample_rate=SAMPLE_RATE,
        frame_length=FRAME_LENGTH,
        frame_step=FRAME_STEP,
        fft_length=FFT_LENGTH,
        num_mel_bins=NUM_MEL_BINS,
        lower_edge_hertz=LOWER_EDGE_HERTZ,
        upper_edge_hertz=UPPER_EDGE_HERTZ,
        log_offset=LOG_OFFSET,
        dtype=tf.float32,
    )
    unknown = sorted(set(feature_kwargs) - set(options))
    if unknown:
        raise TypeError(f"make_audio_map_fn() got unexpected keyword(s) {unknown}.")
    options.update(feature_kwargs)
    if options["log_offset"] <= 0:
        raise ValueError(
            f"`log_offset` must be positive. Received {options['log_offset']!r}."
        )
    # The mel matrix and the window are built once here, as constants, not
    # once per clip: the same float64 values, so the same features.
    with tf.init_scope():
        weights = _mel_matrix(
            options["sample_rate"],
            options["fft_length"],
            options["num_mel_bins"],
            options["lower_edge_hertz"],
            options["upper_edge_hertz"],
        ).numpy()
        window = tf.signal.hann_window(options["frame_length"], dtype=tf.float64)
        window = window.numpy()

    def map_fn(path):
        waveform = decode_wav(tf.io.read_file(path), options["sample_rate"])
        return _log_mel(
            fix_length(waveform, num_samples),
            weights,
            lambda length, dtype: tf.constant(window, dtype),
            options["frame_length"],
            options["frame_step"],
            options["fft_length"],
            options["log_offset"],
            options["dtype"],
        )

    return map_fn
