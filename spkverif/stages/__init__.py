"""The stages: one module (or package) per verb of `spkverif`, no Click.

Each takes what its command parses and does the work with the nouns below it (io,
frontends, models, losses, backends, runtime, metrics, plots, training). Importing this
package imports no stage.
"""
