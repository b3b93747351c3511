"""The old Python pipeline's way, end to end: PIL + torchvision transforms in a ThreadPoolExecutor
(all cores), batches fed to PyTorch ResNet-50 fp16 channels_last on the GPU, features to disk.
Usage: e2e_gpu_peer.py DATA_DIR OUT.npy [BATCH]. Prints: python IMAGES_PER_S N SECONDS stages..."""
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision import transforms

root, out = sys.argv[1], sys.argv[2]
batch = int(sys.argv[3]) if len(sys.argv) > 3 else 256
paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".jpg"))
tf = transforms.Compose([transforms.Resize((224, 224)), transforms.ToTensor(),
                         transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])


def load(p):
    return tf(Image.open(p).convert("RGB"))


torch.backends.cudnn.benchmark = True
model = torchvision.models.resnet50(weights=None)
model.fc = torch.nn.Identity()
model = model.eval().half().cuda().to(memory_format=torch.channels_last)
with torch.inference_mode():  # warm-up (cudnn.benchmark), not timed
    model(torch.randn(batch, 3, 224, 224, device="cuda").half().to(memory_format=torch.channels_last))
torch.cuda.synchronize()
t0 = time.perf_counter()
pre_s = inf_s = 0.0
feats = []
with ThreadPoolExecutor(max_workers=os.cpu_count()) as ex, torch.inference_mode():
    for i in range(0, len(paths), batch):
        a = time.perf_counter()
        x = torch.stack(list(ex.map(load, paths[i:i + batch])))
        b = time.perf_counter()
        y = model(x.cuda(non_blocking=True).half().to(memory_format=torch.channels_last))
        y = torch.nn.functional.normalize(y.float(), dim=1)
        feats.append(y.cpu().numpy())
        c = time.perf_counter()
        pre_s += b - a
        inf_s += c - b
np.save(out, np.concatenate(feats))
total = time.perf_counter() - t0
print("python %.1f %d %.2f preprocess=%.1fs(%.0f%%) infer=%.1fs" % (len(paths) / total, len(paths), total, pre_s,
                                                                    100 * pre_s / total, inf_s))
