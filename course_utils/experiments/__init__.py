"""The labs' experiments: comparisons over seeds and budgets that a notebook shows as a table.

* ``core``                 -- what they share: sizes by profile, FLOP budgets, label-budget splits,
  early-stopped fine-tuning and the summary over seeds;
* ``label_budget``         -- Lab 4: pretrained against scratch BEHRT at label budgets;
* ``objective_comparison`` -- Lab 5: five pretraining objectives at equal FLOPs;
* ``image_pretraining``    -- Lab 6: SimCLR, MAE and SimMIM at equal FLOPs on shifted digits, with its arms
  and verdicts;
* ``record_pretraining``   -- Lab 6: contrastive against masked-event pretraining of patient records.
"""
