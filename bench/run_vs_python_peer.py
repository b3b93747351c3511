"""The old Python pipeline's stages on the CPU, on imgsim run's split (JOB/train.tsv, test.tsv):
PIL + torchvision transforms in a ThreadPoolExecutor (all cores), PyTorch ResNet CPU features in
batches of 32, numpy cosine similarity + top-5. Prints "key value" lines."""
import os
import platform
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision import transforms

job, arch = sys.argv[1], sys.argv[2]


def read(tsv):
    rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(job, tsv))][1:]
    return [os.path.join(job, r[0]) for r in rows], [r[1] for r in rows]


tf = transforms.Compose([transforms.Resize((224, 224)), transforms.ToTensor(),
                         transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
model = getattr(torchvision.models, arch)(weights=None)
model.fc = torch.nn.Identity()
model.eval()
torch.set_num_threads(os.cpu_count())


def extract(paths, ex):
    out = []
    with torch.inference_mode():
        for i in range(0, len(paths), 32):
            x = torch.stack(list(ex.map(lambda p: tf(Image.open(p).convert("RGB")), paths[i:i + 32])))
            out.append(model(x).numpy())
    f = np.concatenate(out)
    return f / np.linalg.norm(f, axis=1, keepdims=True)


t0 = time.perf_counter()
gp, gl = read("train.tsv")
qp, ql = read("test.tsv")
with ThreadPoolExecutor(max_workers=os.cpu_count()) as ex:
    g = extract(gp, ex)
    q = extract(qp, ex)
t1 = time.perf_counter()
sim = q @ g.T
top = np.argsort(-sim, axis=1, kind="stable")[:, :5]
t2 = time.perf_counter()
top1 = np.mean([gl[top[i, 0]] == ql[i] for i in range(len(qp))])
print("machine %s, %d cores, torch %s" % (platform.processor() or platform.machine(), os.cpu_count(), torch.__version__))
print("extract_s %.3f" % (t1 - t0))
print("search_s %.3f" % (t2 - t1))
print("total_s %.3f" % (t2 - t0))
print("top1 %.4f" % top1)
print("peak_rss_mb %.0f" % (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
