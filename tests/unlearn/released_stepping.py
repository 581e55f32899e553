"""The released forget.py's learning-rate stepping, alone, under `torchrun --nproc_per_node N` (gloo).

transformers' cosine-with-warmup schedule built for epochs x ceil(len(loader) / (grad_accum x
processes)) optimizer steps before ``accelerator.prepare``; every micro-batch under
``accelerator.accumulate`` calls ``optimizer.step()``, ``lr_scheduler.step()`` and
``optimizer.zero_grad()``, as forget.py does. Writes, from the main process, the learning rate of
each optimizer update (read before the step that applies it) to the JSON file named by argv[1].
Argv: OUT N_EXAMPLES GRAD_ACCUM EPOCHS WARMUP_RATIO LR.
"""

import json
import math
import sys

import torch
from accelerate import Accelerator
from transformers import get_scheduler

out, n, grad_accum, epochs, warmup_ratio, lr = (
    sys.argv[1],
    int(sys.argv[2]),
    int(sys.argv[3]),
    int(sys.argv[4]),
    float(sys.argv[5]),
    float(sys.argv[6]),
)
accelerator = Accelerator(gradient_accumulation_steps=grad_accum, cpu=True)
torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
loader = torch.utils.data.DataLoader(torch.randn(n, 4), batch_size=1, shuffle=False)
per_epoch = math.ceil(len(loader) / (grad_accum * accelerator.num_processes))
total = epochs * per_epoch
scheduler = get_scheduler(
    name="cosine", optimizer=optimizer, num_warmup_steps=round(warmup_ratio * total), num_training_steps=total
)
model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
rates = []
for _ in range(epochs):
    for x in loader:
        with accelerator.accumulate(model):
            accelerator.backward(model(x).pow(2).mean())
            if accelerator.sync_gradients:
                rates.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
if accelerator.is_main_process:
    json.dump({"total": total, "rates": rates}, open(out, "w"))
