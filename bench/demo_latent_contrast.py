"""FD_vaelab of N(0, I) samples of the demo's AE and VAE at several latent sizes, on digits: where the
lecture's "an autoencoder cannot be sampled" shows (it chose the demo's CONTRAST_DIM = 16).

    OMP_NUM_THREADS=1 python bench/demo_latent_contrast.py 2,4,8,16   # -> /tmp/lc/contrast-2,4,8,16.json
"""
import json, sys, torch
from vaelab.data import load_dataset, for_evaluation
from vaelab.eval.features import fd_vaelab
from vaelab.objectives import ObjectiveConfig
from vaelab.train import TrainConfig
from vaelab.train.run import train_run
torch.set_num_threads(1)
train, test = load_dataset("digits", "train"), for_evaluation(load_dataset("digits", "test"))
rows = []
for d in [int(v) for v in sys.argv[1].split(",")]:
    for name, extra in (("ae", {}), ("vae", {"likelihood": "gaussian", "sigma": 0.1})):
        for seed in (0, 1):
            cfg = TrainConfig(epochs=150, batch_size=64, lr=2e-3, progress=False, seed=seed)
            model, _ = train_run(name, "digits", f"/tmp/lc/{name}-{d}-{seed}", {"latent_dim": d, "hidden": (256, 128), **extra},
                                 cfg, ObjectiveConfig(), val_fraction=0.0, overwrite=True)
            fd = fd_vaelab(model.cpu().eval(), test, train, seed=seed)["frechet_distance"]
            rows.append({"model": name, "latent_dim": d, "seed": seed, "fd": fd})
            print(json.dumps(rows[-1]), flush=True)
json.dump(rows, open(f"/tmp/lc/contrast-{sys.argv[1]}.json", "w"))
