"""ESMFold: results, runtime (memory policy), loading and folding, bulk runs, structures.

Modules, lowest first (each imports only those above it): `structure` (Structure, PDB/mmCIF,
biotite analysis), `results` (FoldResult, FoldFailure, FoldInput, scores JSON, decoding the
model's output), `options` (FoldOptions), `memory` (activation estimate, auto chunk size),
`runtime` (Folder: placement, OOM fallbacks, non-finite guard on a loaded model), `esmfold`
(load_folding_model, fold, prepare), `bulk` (fold_fasta). Nothing is imported here.
"""
