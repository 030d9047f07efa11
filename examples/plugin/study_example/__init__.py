"""An example plugin: importing it registers its model, dataset, strategy, branch and objective
with the platform (what `plugins: [study_example]` in a spec does on every Ray worker)."""

import study
from study_example.data import fashion_folder
from study_example.models import build_res_cnn
from study_example.tickets import LAST_VAL_ACC, MAGNITUDE_AT_INIT, MAGNITUDE_INCREASE

study.register_model("res_cnn", build_res_cnn)
study.register_dataset("fashion_folder", fashion_folder)
study.register_strategy(MAGNITUDE_INCREASE)
study.register_branch(MAGNITUDE_AT_INIT)
study.register_objective(LAST_VAL_ACC)
