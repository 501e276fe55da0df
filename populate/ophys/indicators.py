"""Calcium-indicator decay times for L0 event detection, and the AR(1) decay factor gamma.

The decay time (mean lifetime, s) of a subject is looked up by its **full genotype**, exactly as Allen's
event detection does (ophys_etl ``event_detection/resources/event_decay_time_lookup.py`` and
``schemas.py::get_decay_time``): an exact string match against :data:`ALLEN_DECAY_TIMES`, no substring
rules, no fallback. A genotype that is not in the table is an error unless a decay time is given
explicitly (a subject's ``decay_time`` in the manifest, or ``events_decay_time_s`` in the ophys parameter
set); a genotype that *is* in the table wins over an explicit value, as in Allen's module.
"""

from __future__ import annotations

import numpy as np

# Allen's full genotype -> decay time (s) table, in Allen's order (41 keys; Allen's literal repeats one line)
ALLEN_DECAY_TIMES: dict[str, float] = {
    "Slc17a7-IRES2-Cre/wt;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)/wt": 0.347,
    "Rbp4-Cre_KL100/wt;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)/Ai93(TITL-GCaMP6f)": 0.495,
    "Sst-IRES-Cre/wt;Ai148(TIT2L-GC6f-ICL-tTA2)/wt": 0.464,
    "Emx1-IRES-Cre/wt;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)/wt": 0.317,
    "Rorb-IRES2-Cre/wt;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)/Ai93(TITL-GCaMP6f)": 0.463,
    "Cux2-CreERT2/wt;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)/Ai93(TITL-GCaMP6f)": 0.375,
    "Rbp4-Cre_KL100/wt;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)/wt": 0.404,
    "Pvalb-IRES-Cre/wt;Ai162(TIT2L-GC6s-ICL-tTA2)/wt": 0.715,
    "Cux2-CreERT2/Cux2-CreERT2;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)/Ai93(TITL-GCaMP6f)": 0.375,
    "Vip-IRES-Cre/wt;Ai148(TIT2L-GC6f-ICL-tTA2)/wt": 0.52,
    "Ntsr1-Cre_GN220/wt;Ai148(TIT2L-GC6f-ICL-tTA2)/wt": 0.378,
    "Rorb-IRES2-Cre/wt;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)/wt": 0.346,
    "Nr5a1-Cre/wt;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)/Ai93(TITL-GCaMP6f)": 0.491,
    "Fezf2-CreER/wt;Ai148(TIT2L-GC6f-ICL-tTA2)/wt": 0.433,
    "Cux2-CreERT2/wt;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)/wt": 0.317,
    "Nr5a1-Cre/wt;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)/wt": 0.349,
    "Tlx3-Cre_PL56/wt;Ai148(TIT2L-GC6f-ICL-tTA2)/wt": 0.376,
    "Scnn1a-Tg3-Cre/wt;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)/wt": 0.349,
    "Scnn1a-Tg3-Cre/wt;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)/Ai93(TITL-GCaMP6f)": 0.462,
    "Emx1-IRES-Cre/wt;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)-hyg/wt": 0.309,
    "Emx1-IRES-Cre/wt;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)/Ai93(TITL-GCaMP6f)": 0.365,
    "Slc17a7-IRES2-Cre/wt;Camk2a-tTA/wt;Ai94(TITL-GCaMP6s)/wt": 0.738,
    "Gad2-IRES-Cre/wt;Slc32a1-T2A-FlpO/wt;Ai195(TIT2L-GC7s-ICF-IRES-tTA2)-hyg/wt": 0.715,
    "Gad2-IRES-Cre/wt;Slc32a1-T2A-FlpO/wt;Ai210(TITL-GC7f-ICF-IRES-tTA2)-hyg/wt": 0.715,
    "Gad2-IRES-Cre/wt;Slc32a1-T2A-FlpO/wt;TIGRE-jGCaMP8s-IRES-tTA2_A8/wt": 0.7,
    "Gad2-IRES-Cre/wt;Slc32a1-T2A-FlpO/wt;TIT2L-jGCaMP8s-WPRE-ICL-IRES-tTA2/wt": 0.7,
    "Gad2-IRES-Cre/wt;Slc32a1-T2A-FlpO/wt;TIGRE-jGCaMP8m-IRES-tTA2-WPRE_A9/wt": 0.4,
    "Gad2-IRES-Cre/wt;Slc32a1-T2A-FlpO/wt;TIT2L-jGCaMP8m-WPRE-ICL-IRES-tTA2-WPRE/wt": 0.4,
    "Slc32a1-IRES-Cre/wt;TIGRE-jGCaMP8s-IRES-tTA2_A8/wt": 0.7,
    "Slc32a1-IRES-Cre/wt;Oi1(TIT2L-jGCaMP8s-WPRE-ICL-IRES-tTA2)/wt": 0.7,
    "Gad2-IRES-Cre/wt;Slc32a1-T2A-FlpO/wt;Oi3(TIT2L-jGCaMP8m-WPRE-ICL-IRES-tTA2-WPRE)/wt": 0.4,
    "Slc32a1-IRES-Cre/wt;Oi4(TIT2L-jGCaMP8s-RiboL1-WPRE-ICL-IRES-tTA2-WPRE)/wt": 0.7,
    "Snap25-IRES2-Cre/wt;Oi4(TIT2L-jGCaMP8s-RiboL1-WPRE-ICL-IRES-tTA2-WPRE)/wt": 0.7,
    "Cux2-CreERT2/wt;Oi3(TIT2L-jGCaMP8m-WPRE-ICL-IRES-tTA2-WPRE)/wt": 0.4,
    "Cux2-CreERT2/wt;Oi1(TIT2L-jGCaMP8s-WPRE-ICL-IRES-tTA2)/wt": 0.7,
    "wt/wt": 0.7,
    "Oi4(TIT2L-jGCaMP8s-RiboL1-WPRE-ICL-IRES-tTA2-WPRE)/Oi4(TIT2L-jGCaMP8s-RiboL1-WPRE-ICL-IRES-tTA2-WPRE)": 0.7,
    "Oi1(TIT2L-jGCaMP8s-WPRE-ICL-IRES-tTA2)/wt": 0.7,
    "Oi4(TIT2L-jGCaMP8s-RiboL1-WPRE-ICL-IRES-759732-tTA2-WPRE)": 0.7,
    "Slc17a7-IRES2-Cre/wt;Oi1(TIT2L-jGCaMP8s-WPRE-ICL-IRES-tTA2)/wt": 0.7,
    "Oi4(TIT2L-jGCaMP8s-RiboL1-WPRE-ICL-IRES-tTA2-WPRE)/wt": 0.7,
}

# indicator names a subject may carry (the Indicator lookup; the imaging plane's indicator in NWB)
INDICATORS: tuple[str, ...] = ("GCaMP6f", "GCaMP6s", "GCaMP7f", "GCaMP7s", "jGCaMP8m", "jGCaMP8s", "unknown")


class UnknownGenotypeError(ValueError):
    """A full genotype missing from Allen's decay-time table, with no explicit decay time to fall back on."""


def decay_time_s(full_genotype: str | None, decay_time: float | None = None) -> float:
    """Decay time (s) for L0 events: Allen's table entry for ``full_genotype``, else ``decay_time``.

    The genotype must match a key of :data:`ALLEN_DECAY_TIMES` exactly; when it does, it overrides
    ``decay_time`` (Allen's rule). Raises :class:`UnknownGenotypeError` naming the genotype when it is not in
    the table and no ``decay_time`` is given, and ValueError for a non-positive ``decay_time``.
    """
    if full_genotype and full_genotype in ALLEN_DECAY_TIMES:
        return ALLEN_DECAY_TIMES[full_genotype]
    if decay_time is not None:
        if not decay_time > 0:
            raise ValueError(f"decay time must be positive, got {decay_time} s")
        return float(decay_time)
    if full_genotype:
        raise UnknownGenotypeError(
            f"full genotype {full_genotype!r} is not in Allen's decay-time table ({len(ALLEN_DECAY_TIMES)} "
            "genotypes, exact match); give the subject's decay_time in the manifest or events_decay_time_s "
            "in the ophys parameter set"
        )
    raise UnknownGenotypeError(
        "no full genotype and no decay time: give the subject's full_genotype (one of Allen's table) or "
        "its decay_time in the manifest, or events_decay_time_s in the ophys parameter set"
    )


def halflife_s(decay_time: float) -> float:
    """Half-life (s) of a decay with mean lifetime ``decay_time`` (s): ``ln(2) * decay_time``."""
    return float(np.log(2) * decay_time)


def gamma(decay_time: float, fs: float) -> float:
    """AR(1) decay factor per frame, ``exp(-ln(2) / (halflife * fs))`` = exp(-1 / (decay_time * fs)).

    Computed through the half-life as Allen does, so it agrees with Allen's value to the last bit.
    """
    if not (decay_time > 0 and fs > 0):
        raise ValueError(f"decay time ({decay_time} s) and frame rate ({fs} Hz) must be positive")
    return float(np.exp(-(np.log(2) / (halflife_s(decay_time) * fs))))
