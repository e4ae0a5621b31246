"""nanoto diffusion-model stage (installed as ``nanoto_models``).

A conditional denoising diffusion model over designs stored as occupancy grids of shape (4, nx, ny, nz):
the 4 FCC sublattices times nx, ny, nz conventional cells. It learns designs with their fixed (clamp and
load) sites and a condition vector, and samples new designs with classifier-free guidance and the fixed
sites in-painted.

Modules (each imports torch; this package itself does not, so ``import nanoto_models`` stays light):

* ``unet``        UNet3D, the conditional eps-predicting 3D U-Net (periodic axes, any grid size)
* ``schedule``    ScheduleConfig, NoiseSchedule, make_sampler: diffusers' DDPM / DDIM schedulers
* ``ema``         EMA of the weights (diffusers' EMAModel)
* ``data``        GridDataset, the in-memory training tensors
* ``train``       TrainConfig, train(): masked eps loss, AdamW, EMA, atomic checkpoints, exact resume
* ``checkpoint``  checkpoint format, atomic writes, load_model()
* ``sample``      sample() (guided DDPM / DDIM with in-painting) and to_occupancy() (exact atom count)
* ``device``      resolve_device("cpu" | "cuda" | "auto")

Needs the ``ml`` extra (torch, diffusers).
"""
