"""Training a world: V, then M, then the bundle (`train_world`), one module per job.

config (options, fingerprint), episodes (the dataset in memory), vae (V's epochs, encoding), mdn
(M's windows, batches, loss, epochs), metrics (held-out scores and baselines), workspace
(OUT/.train: progress, checkpoints, lock), context (what the stages share), epochs (the shared
epoch loop), report (images), card (MODEL_CARD.md) and pipeline (the stages, top to bottom);
rssm (the RSSM's loss and epochs), rssm_stage (M's stage when `--memory rssm`) and openloop (the
held-out k-step open-loop z error of either memory).
"""

from dreamgym.training.card import model_card
from dreamgym.training.config import (
    FINGERPRINT_FIELDS,
    WEIGHTS_DTYPES,
    EpochCallback,
    TrainConfig,
    TrainingStateError,
    check_config,
    command_line,
)
from dreamgym.training.episodes import (
    EpisodeData,
    data_dirs,
    episode_starts,
    load_episodes,
    load_manifests,
    select_episodes,
    select_from_datasets,
    select_training_data,
    split_episodes,
    split_train_val,
)
from dreamgym.training.epochs import commit_epoch, run_epochs
from dreamgym.training.mdn import (
    DONE_WEIGHT_CAP,
    LatentEpisodes,
    LRSchedule,
    auto_done_weight,
    count_rnn_batches,
    init_rnn_heads,
    make_windows,
    rnn_batch,
    rnn_loss,
    sequence_loss,
    train_rnn_epoch,
)
from dreamgym.training.metrics import (
    FLOAT16_TOLERANCE,
    done_metrics,
    evaluate_rnn,
    held_out_metrics,
    latent_stats,
)
from dreamgym.training.pipeline import TrainResult, default_threads, run_training, train_world
from dreamgym.training.report import (
    REPORT_DIR,
    image_grid,
    save_dream_rollout,
    save_reconstructions,
)
from dreamgym.training.streams import EpisodeStreams, make_streams, stream_chunks
from dreamgym.training.vae import (
    encode_frames,
    evaluate_vae,
    frames_to_batch,
    load_vae_from,
    make_adam,
    mean_frame_mse,
    prepare_vae_for_training,
    train_vae_epoch,
)
from dreamgym.training.workspace import (
    ENCODED_LATENTS_FILE,
    PROGRESS_FILE,
    WORK_DIR,
    TrainingBusyError,
    Workspace,
)

__all__ = [
    "DONE_WEIGHT_CAP",
    "ENCODED_LATENTS_FILE",
    "FINGERPRINT_FIELDS",
    "FLOAT16_TOLERANCE",
    "PROGRESS_FILE",
    "REPORT_DIR",
    "WEIGHTS_DTYPES",
    "WORK_DIR",
    "EpisodeData",
    "EpochCallback",
    "LatentEpisodes",
    "TrainConfig",
    "TrainResult",
    "TrainingBusyError",
    "TrainingStateError",
    "Workspace",
    "auto_done_weight",
    "check_config",
    "command_line",
    "commit_epoch",
    "data_dirs",
    "default_threads",
    "done_metrics",
    "encode_frames",
    "episode_starts",
    "evaluate_rnn",
    "evaluate_vae",
    "frames_to_batch",
    "held_out_metrics",
    "image_grid",
    "init_rnn_heads",
    "latent_stats",
    "load_episodes",
    "load_manifests",
    "load_vae_from",
    "make_adam",
    "make_windows",
    "make_streams",
    "stream_chunks",
    "EpisodeStreams",
    "LRSchedule",
    "count_rnn_batches",
    "sequence_loss",
    "mean_frame_mse",
    "model_card",
    "prepare_vae_for_training",
    "rnn_batch",
    "rnn_loss",
    "run_epochs",
    "run_training",
    "save_dream_rollout",
    "save_reconstructions",
    "select_episodes",
    "select_from_datasets",
    "select_training_data",
    "split_episodes",
    "split_train_val",
    "train_rnn_epoch",
    "train_vae_epoch",
    "train_world",
]
