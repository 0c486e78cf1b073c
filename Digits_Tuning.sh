#!/usr/bin/env bash
# The digits protocol, tuned (docs/tuning.md): for every loss below, the baseline (main_original.py) and its
# LSD twin (main.py --loss <loss>_lsd) each get the same Optuna search (utilities.tune: seeded TPE, class-
# disjoint cross-validation folds split by samples, objective Val mAP@R), over the learning rate and, on the
# LSD side, also --kd_alpha and --kd_tau. The best settings are then trained on all training digits with
# seeds 0..SEEDS-1 (groups DIGT_<Loss> / DIGTlsd_<Loss>), and the untuned settings of Digits_Runs.sh
# (lr 3e-4; LSD: --kd_alpha 50 --kd_tau 1) are trained the same way, on the same network, with the same
# seeds (groups DIGU_<Loss> / DIGUlsd_<Loss>): the two comparisons differ in the hyperparameters only.
#
# Sized for a 2-core CPU machine: timm's tiny test ResNet at 16 px (tests/conftest.py's TINY_NETWORK; the
# unnormalised variant for angular, N-pair and generalised lifted, as Digits_Runs.sh), 3 epochs, TRIALS
# trials of FOLDS folds per study, --slots SLOTS. Every step resumes: rerun the same command after a kill.
#
#   nohup nice -n 5 bash Digits_Tuning.sh >> Sweeps/Digits_Tuning.log 2>&1 &
# (bash reads a script while it runs it: to edit this file during a study, run a copy of it instead)
#   python Result_Evaluations.py --source local --path Sweeps/Digits_Tuning/studies/*/reproduce Sweeps/Digits_Tuning/untuned \
#          --min_length 0 --selection last --columns R@1 R@5 NMI F1 mAP@R Seeds --ci 0.95 --paired \
#          --out Sweeps/Digits_Tuning/tables
#
# Variables (environment): OUT (Sweeps/Digits_Tuning), TRIALS (3), FOLDS (2), SEEDS (5), SLOTS (2), LOSSES
# (a space-separated subset of the table names below).
set -u
OUT=${OUT:-Sweeps/Digits_Tuning}
TRIALS=${TRIALS:-3}
FOLDS=${FOLDS:-2}
SEEDS=${SEEDS:-5}
SLOTS=${SLOTS:-2}
export OMP_NUM_THREADS=1
COMMON="--dataset digits --input_size 16 --not_pretrained --n_epochs 3 --bs 40 --samples_per_class 4 --embed_dim 8 --kernels 0 --no_train_metrics --no_plots --storage_metrics mAP_c --evaluation_metrics e_recall@1 e_recall@5 nmi f1 mAP_c"
NORMALISED="--arch timm/test_resnet_normalize"
UNNORMALISED="--arch timm/test_resnet"
BASE_SPACE="lr=log:1e-4:3e-3"
LSD_SPACE="lr=log:1e-4:3e-3 kd_alpha=log:1:500 kd_tau=log:0.1:10"

# table name | loss | flags of both sides (the losses where untuned LSD fell behind first)
CONFIGS=(
  "Angular|angular|$UNNORMALISED --batch_mining npair"
  "Npair|npair|$UNNORMALISED --batch_mining npair"
  "GenLifted|lifted|$UNNORMALISED --batch_mining lifted"
  "MS|multisimilarity|$NORMALISED"
  "noisy30_MS|multisimilarity|$NORMALISED --noisy_label --noisy_ratio 0.3"
  "Margin_Distance|margin|$NORMALISED --batch_mining distance"
  "Histogram|histogram|$NORMALISED --loss_histogram_nbins 65"
  "Triplet_Distance|triplet|$NORMALISED --batch_mining distance"
  "ProxyNCA|proxynca|$NORMALISED"
  "ProxyAnchor|proxyanchor|$NORMALISED"
)
LOSSES=${LOSSES:-}

mkdir -p "$OUT/studies" "$OUT/untuned"
began=$(date +%s)
for config in "${CONFIGS[@]}"; do
  IFS='|' read -r name loss flags <<< "$config"
  if [ -n "$LOSSES" ] && [[ " $LOSSES " != *" $name "* ]]; then continue; fi
  # groups DIGT_<name> / DIGTlsd_<name>; noisy30_MS -> DIGTnoisy30_MS / DIGTnoisy30lsd_MS (as Digits_Runs.sh)
  case $name in
    noisy30_*) base="noisy30_${name#noisy30_}"; lsd="noisy30lsd_${name#noisy30_}" ;;
    *) base="_$name"; lsd="lsd_$name" ;;
  esac
  start=$(date +%s)
  lines="$OUT/untuned/DIGU_$name.sh"
  : > "$lines"
  for side in base lsd; do
    if [ $side = base ]; then script=main_original.py; side_loss=$loss; tag=$base; space=$BASE_SPACE; untuned=""
    else script=main.py; side_loss=${loss}_lsd; tag=$lsd; space=$LSD_SPACE; untuned="--kd_alpha 50 --kd_tau 1"; fi
    python -m utilities.tune "$OUT/studies/DIGT$tag" --trials "$TRIALS" --folds "$FOLDS" --seed 0 --startup_trials 2 \
        --slots "$SLOTS" --reproduce "$SEEDS" --reproduce_group "DIGT$tag" --space $space \
        -- python $script $COMMON --tv_split_by_samples --loss "$side_loss" $flags
    status=$?; [ $status -le 1 ] || exit $status   # 1: a reproduction failed (its log says why); go on
    for seed in $(seq 0 $((SEEDS - 1))); do
      echo "python $script $COMMON --lr 0.0003 $untuned --loss $side_loss $flags --group DIGU$tag --seed $seed" >> "$lines"
    done
  done
  # the untuned settings, both sides in one sweep
  python -m utilities.sweep "$lines" --sweep_dir "$OUT/untuned/DIGU_$name" --slots "$SLOTS"
  status=$?; [ $status -le 1 ] || exit $status
  echo "config $name: $(( $(date +%s) - start )) s"
done
echo "Digits_Tuning: $(( $(date +%s) - began )) s wall"
times
