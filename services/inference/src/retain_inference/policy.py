"""The allow-list of mesh members for each InferenceService RPC."""

from retain_runtime.callers import CallPolicy

SERVICE = "retain.inference.v1.InferenceService"

_ADMIN = ["operator", "envoy"]

POLICY = CallPolicy(
    SERVICE,
    {
        "TrainModel": _ADMIN,
        "ListModels": _ADMIN,
        "PromoteModel": _ADMIN,
        "RollbackModel": _ADMIN,
        "StartScoringRun": _ADMIN,
        "GetScoringRun": _ADMIN,
        "ListScoringRuns": _ADMIN,
        "ListScores": [*_ADMIN, "comms"],
        "GetCustomerScore": _ADMIN,
        "GetRiskDistribution": _ADMIN,
        "EvaluateScoringRun": _ADMIN,
        "ComposeMessages": ["comms", "operator"],
        "GetJob": _ADMIN,
    },
)
