"""ESMFold: results, runtime (memory policy), loading and folding, bulk runs, structures.

Modules, lowest first (each imports only those above it): `structure` (Structure, PDB/mmCIF,
biotite analysis), `results` (FoldResult, FoldFailure, FoldInput, scores JSON), `runtime`
(memory/chunk/OOM policy on a loaded model), `esmfold` (load_folding_model, fold, prepare),
`bulk` (fold_fasta). Nothing is imported here.
"""
