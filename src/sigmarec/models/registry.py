"""Models by name: the one place a new model is registered."""

from __future__ import annotations

from sigmarec.config import ConfigError
from sigmarec.models.acvae import ACVAE
from sigmarec.models.base import SequentialRecommender
from sigmarec.models.bert4rec import BERT4Rec
from sigmarec.models.bprmf import BPRMF
from sigmarec.models.comirec import ComiRecDR, ComiRecSA
from sigmarec.models.contrastvae import ContrastVAE
from sigmarec.models.dss import DSS
from sigmarec.models.dt4sr import DT4SR
from sigmarec.models.gru4rec import GRU4Rec
from sigmarec.models.hnvm import HNVM
from sigmarec.models.hrnn import HRNN, SessionGRU4Rec
from sigmarec.models.lightgcn import LightGCN
from sigmarec.models.mind import MIND
from sigmarec.models.pop import Pop
from sigmarec.models.sasrec import SASRec
from sigmarec.models.sigma import SIGMA
from sigmarec.models.sine import SINE
from sigmarec.models.svae import SVAE

MODELS: dict[str, type[SequentialRecommender]] = {
    "sasrec": SASRec,
    "gru4rec": GRU4Rec,
    "sigma": SIGMA,
    "mind": MIND,
    "comirec_dr": ComiRecDR,
    "comirec_sa": ComiRecSA,
    "sine": SINE,
    "dss": DSS,
    "pop": Pop,
    "hrnn": HRNN,
    "gru4rec_session": SessionGRU4Rec,
    "hnvm": HNVM,
    "bert4rec": BERT4Rec,
    "bprmf": BPRMF,
    "lightgcn": LightGCN,
    "contrastvae": ContrastVAE,
    "svae": SVAE,
    "dt4sr": DT4SR,
    "acvae": ACVAE,
}


def get_model_class(name: str) -> type[SequentialRecommender]:
    try:
        return MODELS[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}") from None
