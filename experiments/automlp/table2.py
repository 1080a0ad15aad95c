r"""AutoMLP's Table 2 on the public data: the Table 1 runner with AutoMLP's protocol.

    python -m experiments.automlp.table2 --root=/tmp/table2 --datasets=ml-1m,beauty
    python -m experiments.automlp.report --root=/tmp/table2

The paper's protocol (NOTES.md section 3): RecBole, users with fewer than 10 interactions
and items with fewer than 5 removed (`automlp` preset), leave-one-out, 100 negatives sampled
by popularity, MRR/NDCG/HR@10, Adam lr 1e-3. Every model is tuned the same way on
validation MRR@10 (`experiments/pyramid_mixer/table1.py` explains the grid and the
layout of the runs), and every chosen checkpoint is also scored under full ranking. An
AutoMLP run first searches its short-term length in its own workdir (`search/`), then
retrains with the chosen k.
"""

from absl import app, flags

from experiments.pyramid_mixer import table1

MODELS = ['automlp', 'fpmc', 'gru4rec', 'bert4rec', 'nextitnet', 'gru4rec_plus', 'fdsa']

if __name__ == '__main__':
  flags.FLAGS.set_default('preset', 'automlp')
  flags.FLAGS.set_default('datasets', ['ml-1m', 'beauty'])
  flags.FLAGS.set_default('models', MODELS)
  flags.FLAGS.set_default('lrs', ['1e-3'])  # The paper's; widen with --lrs for tuning.
  flags.FLAGS.set_default('patience', 10)  # The paper's early stopping.
  app.run(table1.main)
