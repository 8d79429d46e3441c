"""Hyper-parameters of the embedded models: architecture (exported to models.yaml) and training.

The 2-bar models are sized for 15-35 minutes of single-thread CPU training each, all three together
well under 15 MB of float32 (8.8 MB). ``mel_16bar`` is magenta's ``hier-mel_16bar`` (hierarchical
encoder and decoder, level lengths [16, 16]) at 1/8 of its widths: 1.34 M parameters, 5.3 MB, about
1 s per batch of 64 on one thread of a busy 2-core machine, so an hour of training sees ~3,500 batches
(~220k 16-bar windows). Its free bits keep magenta's 0.5 bits per latent dimension (256 for z 512
there, 64 for z 128 here).
``steps`` are those of the shipped models (a ``--max-minutes`` budget may stop a run earlier).
"""

CONFIGS = {
    "mel_2bar": {
        "kind": "musicvae",
        "data": "melody",
        "arch": {"input_depth": 90, "output_depth": 90, "enc_rnn_size": [256], "dec_rnn_size": [256], "z_size": 64},
        "max_seq_len": 32,
        "batch_size": 128,
        "learning_rate": 1e-3,
        "decay_rate": 0.9999,
        "min_learning_rate": 1e-5,
        "grad_clip": 1.0,
        "free_bits": 16.0,
        "max_beta": 0.3,
        "beta_rate": 0.999,
        "transpose_range": [-5, 5],
        "steps": 4000,
    },
    "drums_2bar": {
        "kind": "musicvae",
        "data": "drums",
        "arch": {
            "input_depth": 10,
            "output_depth": 512,
            "enc_rnn_size": [128],
            "dec_rnn_size": [128, 128],
            "z_size": 32,
        },
        "max_seq_len": 32,
        "batch_size": 128,
        "learning_rate": 1e-3,
        "decay_rate": 0.9999,
        "min_learning_rate": 1e-5,
        "grad_clip": 1.0,
        "free_bits": 24.0,
        "max_beta": 0.5,
        "beta_rate": 0.999,
        "steps": 5000,
    },
    "mel_16bar": {
        "kind": "hier_musicvae",
        "data": "melody16",
        "arch": {
            "input_depth": 90,
            "output_depth": 90,
            "enc_rnn_size": [128],
            "dec_rnn_size": [128, 128],
            "z_size": 128,
            "level_lengths": [16, 16],
        },
        "max_seq_len": 256,
        "batch_size": 64,
        "learning_rate": 1e-3,
        "decay_rate": 0.9999,
        "min_learning_rate": 1e-5,
        "grad_clip": 1.0,
        "free_bits": 64.0,
        "max_beta": 0.2,
        "beta_rate": 0.999,
        "transpose_range": [-5, 5],
        "steps": 6000,
    },
    "basic_rnn": {
        "kind": "melody_rnn",
        "data": "melody_rnn",
        "arch": {"num_classes": 38, "rnn_layer_sizes": [128, 128], "min_note": 48, "max_note": 84},
        "seq_len": 64,
        "batch_size": 128,
        "learning_rate": 1e-3,
        "dropout": 0.1,
        "grad_clip": 5.0,
        "steps": 4000,
    },
}
