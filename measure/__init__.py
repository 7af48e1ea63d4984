"""mattex.measure: how good and how fast a file is. The accuracy gate against PyTorch (verify),
the paper's metrics on composites (evaluate), every backend timed side by side (bench), the
budgets they are held to, and the machine the figures were measured on."""
