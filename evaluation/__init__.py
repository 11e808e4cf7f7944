"""faceweb's offline code: evaluation, training and the experiments behind BENCHMARKS.md.

Not part of the running product: the Docker image does not install it (.dockerignore), and the app
never imports it (an import-linter contract in the test command). It may import the app. It is a
Django app only so that its commands run as `manage.py evaluate`, `manage.py train_ood`, ...;
settings add it to INSTALLED_APPS when it is present. Its extra requirements are in
evaluation/requirements.txt.

- `folder`: detect, align and embed a labeled folder `<Person>/<image>`, cached as .npz.
- `metrics`: LFW 10-fold verification, closed-set k-NN (Top-k, CMC), open-set FNIR at FPIR.
- `report`: all protocols over pipeline variants, written as results.json/.md and plots.
- `ood`, `ood_training`, `degrade`: the out-of-distribution filter's training and evaluation.
"""
