"""The Python pipeline's decode + preprocess path, timed, for bench/preprocess.sh; also makes
the benchmark's JPEGs.

  preprocess_peer.py gen DIR N        N photo-like JPEGs (quality 90), half 500x375, half 1600x1200
  preprocess_peer.py run DIR WORKERS REPEAT [TORCH_THREADS]
        PIL open + convert('RGB') + torchvision Resize((224, 224)) + ToTensor + Normalize in a
        ThreadPoolExecutor(WORKERS), as the Python pipeline does; prints images/s. TORCH_THREADS:
        torch's intra-op threads (default 1, which favours the peer; 0 keeps torch's default)."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))


def gen(d, n):
    from pyutil_image import photo_like

    os.makedirs(d, exist_ok=True)
    for i in range(n):
        w, h = (500, 375) if i % 2 == 0 else (1600, 1200)
        path = os.path.join(d, f"img{i:05d}.jpg")
        if not os.path.exists(path):
            photo_like(w, h, seed=i).save(path, quality=90)


def run(d, workers, repeat, torch_threads=1):
    from concurrent.futures import ThreadPoolExecutor

    import torch
    import torchvision.transforms as T
    from PIL import Image

    if torch_threads > 0:  # default 1: per-image tensors are small, threads come from the executor
        torch.set_num_threads(torch_threads)
    t = T.Compose([T.Resize((224, 224)), T.ToTensor(),
                   T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    paths = sorted(os.path.join(d, f) for f in os.listdir(d))

    def load(p):
        return t(Image.open(p).convert("RGB"))

    with ThreadPoolExecutor(workers) as ex:
        list(ex.map(load, paths[: workers * 2]))  # warm-up
        t0 = time.perf_counter()
        for _ in range(repeat):
            for x in ex.map(load, paths):
                assert x.shape == (3, 224, 224)
        dt = time.perf_counter() - t0
    n = len(paths) * repeat
    print(f"python preprocess: {n} images in {dt:.3f} s with {workers} threads "
          f"(torch intra-op threads {torch.get_num_threads()}): {n / dt:.1f} images/s")


if __name__ == "__main__":
    if sys.argv[1] == "gen":
        gen(sys.argv[2], int(sys.argv[3]))
    else:
        run(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]) if len(sys.argv) > 5 else 1)
