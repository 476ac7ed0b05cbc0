"""FLIPNET training (paper Sec. 4, 5.1): the ``flipnet-train`` command and its stages.

    train/config.py        typed TOML configs (configs/*.toml), command-line overrides
    train/data/            datasets, one module each: HQ faces with on-the-fly LQ (Eq. 9, the
                           degradation itself is flipnet_rt/evaluation/degradations.py), real-world pairs,
                           off-shelf pool, mixes; captions, collate; a config's [data] -> a dataset
    train/stream.py        the resumable, sharded sample order
    train/loop.py          the loop every stage shares (Accelerate, AdamW, checkpoints, logging)
    train/vae.py           the model's AutoencoderKL (models trained from scratch)
    train/ae.py            the face autoencoder: reconstruction + association stages (Eq. 6)
    train/restoration.py   restoration mode (Eq. 7, 8) and degradation mode
    train/base.py          the model a diffusion run starts from, what trains
    train/text.py          prompt embeddings and the text drop
    train/losses.py        perceptual, PatchGAN, association losses; train/vgg.py: VGG19
    train/checkpoint.py    safetensors + JSON checkpoints (no pickle)
    train/merge.py         fold LoRA, write a model directory
    train/cli.py           the command line

Importing ``train`` imports nothing heavy; each module imports torch and friends itself.
"""
