#!/usr/bin/env bash
# The paper's protocol in miniature, on the embedded digits dataset (nothing downloaded, CPU is enough):
#  * every base loss (main_original.py, group DIG_<Loss>) and its LSD twin (main.py --loss <loss>_lsd with the
#    LSD README's --kd_alpha 50 --kd_tau 1, group DIGlsd_<Loss>; same miner, backbone and flags otherwise);
#  * clean vs label noise for two losses: 30 % symmetric label noise on the training split
#    (--noisy_label --noisy_ratio 0.3), baseline DIGnoisy30_<Loss> vs LSD DIGnoisy30lsd_<Loss>;
#  * three seeds (0-2) per group, 108 runs, ordered by seed: a sweep cut short still holds every group.
# Model selection without the test set: 80 % of each training digit's images train and 20 % validate
# (--use_tv_split --tv_split_by_samples; a split by classes would leave 1 of the 5 training digits for
# validation, which cannot rank), and the epoch is picked by Val mAP@R (--storage_metrics mAP_c; Val R@1 of
# seen digits reaches 1.0 within a few epochs and would pick the first epoch that ties).
# 3 epochs per run (the README's main command trains 8): about a minute per run on one free CPU core (measured
# 41-81 s, median 52 s), the whole file about 55 minutes with --slots 2 on 2 cores (docs/digits_protocol.md).
#
#   python -m utilities.sweep Digits_Runs.sh --slots 2
#   python Result_Evaluations.py --source local --path Sweeps/Digits_Runs --min_length 0 --selection best_val \
#          --columns R@1 R@5 NMI F1 mAP@R Max_Epoch Seeds --out Sweeps/Digits_Runs/tables
#
# (bash Digits_Runs.sh also runs it, one run after another.)

DIGITS="--dataset digits --not_pretrained --n_epochs 3 --bs 40 --samples_per_class 4 --embed_dim 8 --lr 0.0003 --kernels 0 --no_train_metrics --use_tv_split --tv_split_by_samples --storage_metrics mAP_c"
LSD="--kd_alpha 50 --kd_tau 1"

####################################################################################################
# Seed 0
####################################################################################################
python main_original.py $DIGITS --group DIG_Triplet_Distance --seed 0 --loss triplet --batch_mining distance --arch resnet18_normalize
python main.py $DIGITS $LSD --group DIGlsd_Triplet_Distance --seed 0 --loss triplet_lsd --batch_mining distance --arch resnet18_normalize

python main_original.py $DIGITS --group DIG_Margin_Distance --seed 0 --loss margin --batch_mining distance --arch resnet18_normalize
python main.py $DIGITS $LSD --group DIGlsd_Margin_Distance --seed 0 --loss margin_lsd --batch_mining distance --arch resnet18_normalize

python main_original.py $DIGITS --group DIG_ProxyNCA --seed 0 --loss proxynca --arch resnet18_normalize
python main.py $DIGITS $LSD --group DIGlsd_ProxyNCA --seed 0 --loss proxynca_lsd --arch resnet18_normalize

python main_original.py $DIGITS --group DIG_Npair --seed 0 --loss npair --batch_mining npair --arch resnet18
python main.py $DIGITS $LSD --group DIGlsd_Npair --seed 0 --loss npair_lsd --batch_mining npair --arch resnet18

python main_original.py $DIGITS --group DIG_Angular --seed 0 --loss angular --batch_mining npair --arch resnet18
python main.py $DIGITS $LSD --group DIGlsd_Angular --seed 0 --loss angular_lsd --batch_mining npair --arch resnet18

python main_original.py $DIGITS --group DIG_Contrastive --seed 0 --loss contrastive --batch_mining distance --arch resnet18_normalize
python main.py $DIGITS $LSD --group DIGlsd_Contrastive --seed 0 --loss contrastive_lsd --batch_mining distance --arch resnet18_normalize

python main_original.py $DIGITS --group DIG_GenLifted --seed 0 --loss lifted --batch_mining lifted --arch resnet18
python main.py $DIGITS $LSD --group DIGlsd_GenLifted --seed 0 --loss lifted_lsd --batch_mining lifted --arch resnet18

python main_original.py $DIGITS --group DIG_SNR_Distance --seed 0 --loss snr --batch_mining distance --arch resnet18_normalize
python main.py $DIGITS $LSD --group DIGlsd_SNR_Distance --seed 0 --loss snr_lsd --batch_mining distance --arch resnet18_normalize

python main_original.py $DIGITS --group DIG_MS --seed 0 --loss multisimilarity --arch resnet18_normalize
python main.py $DIGITS $LSD --group DIGlsd_MS --seed 0 --loss multisimilarity_lsd --arch resnet18_normalize

python main_original.py $DIGITS --group DIG_Histogram --seed 0 --loss histogram --arch resnet18_normalize --loss_histogram_nbins 65
python main.py $DIGITS $LSD --group DIGlsd_Histogram --seed 0 --loss histogram_lsd --arch resnet18_normalize --loss_histogram_nbins 65

python main_original.py $DIGITS --group DIG_Softmax --seed 0 --loss softmax --arch resnet18_normalize
python main.py $DIGITS $LSD --group DIGlsd_Softmax --seed 0 --loss softmax_lsd --arch resnet18_normalize

python main_original.py $DIGITS --group DIG_SoftTriple --seed 0 --loss softtriplet --arch resnet18_normalize
python main.py $DIGITS $LSD --group DIGlsd_SoftTriple --seed 0 --loss softtriplet_lsd --arch resnet18_normalize

python main_original.py $DIGITS --group DIG_ArcFace --seed 0 --loss arcface --arch resnet18_normalize
python main.py $DIGITS $LSD --group DIGlsd_ArcFace --seed 0 --loss arcface_lsd --arch resnet18_normalize

python main_original.py $DIGITS --group DIG_Quadruplet_Distance --seed 0 --loss quadruplet --batch_mining distance --arch resnet18_normalize
python main.py $DIGITS $LSD --group DIGlsd_Quadruplet_Distance --seed 0 --loss quadruplet_lsd --batch_mining distance --arch resnet18_normalize

python main_original.py $DIGITS --group DIG_SmoothAP --seed 0 --loss ap_loss --arch resnet18_normalize
python main.py $DIGITS $LSD --group DIGlsd_SmoothAP --seed 0 --loss ap_loss_lsd --arch resnet18_normalize

python main_original.py $DIGITS --group DIG_ProxyAnchor --seed 0 --loss proxyanchor --arch resnet18_normalize
python main.py $DIGITS $LSD --group DIGlsd_ProxyAnchor --seed 0 --loss proxyanchor_lsd --arch resnet18_normalize

# label noise (30 %, symmetric): baseline vs LSD
python main_original.py $DIGITS --noisy_label --noisy_ratio 0.3 --group DIGnoisy30_Margin_Distance --seed 0 --loss margin --batch_mining distance --arch resnet18_normalize
python main.py $DIGITS $LSD --noisy_label --noisy_ratio 0.3 --group DIGnoisy30lsd_Margin_Distance --seed 0 --loss margin_lsd --batch_mining distance --arch resnet18_normalize
python main_original.py $DIGITS --noisy_label --noisy_ratio 0.3 --group DIGnoisy30_MS --seed 0 --loss multisimilarity --arch resnet18_normalize
python main.py $DIGITS $LSD --noisy_label --noisy_ratio 0.3 --group DIGnoisy30lsd_MS --seed 0 --loss multisimilarity_lsd --arch resnet18_normalize

####################################################################################################
# Seed 1
####################################################################################################
python main_original.py $DIGITS --group DIG_Triplet_Distance --seed 1 --loss triplet --batch_mining distance --arch resnet18_normalize
python main.py $DIGITS $LSD --group DIGlsd_Triplet_Distance --seed 1 --loss triplet_lsd --batch_mining distance --arch resnet18_normalize

python main_original.py $DIGITS --group DIG_Margin_Distance --seed 1 --loss margin --batch_mining distance --arch resnet18_normalize
python main.py $DIGITS $LSD --group DIGlsd_Margin_Distance --seed 1 --loss margin_lsd --batch_mining distance --arch resnet18_normalize

python main_original.py $DIGITS --group DIG_ProxyNCA --seed 1 --loss proxynca --arch resnet18_normalize
python main.py $DIGITS $LSD --group DIGlsd_ProxyNCA --seed 1 --loss proxynca_lsd --arch resnet18_normalize

python main_original.py $DIGITS --group DIG_Npair --seed 1 --loss npair --batch_mining npair --arch resnet18
python main.py $DIGITS $LSD --group DIGlsd_Npair --seed 1 --loss npair_lsd --batch_mining npair --arch resnet18

python main_original.py $DIGITS --group DIG_Angular --seed 1 --loss angular --batch_mining npair --arch resnet18
python main.py $DIGITS $LSD --group DIGlsd_Angular --seed 1 --loss angular_lsd --batch_mining npair --arch resnet18

python main_original.py $DIGITS --group DIG_Contrastive --seed 1 --loss contrastive --batch_mining distance --arch resnet18_normalize
python main.py $DIGITS $LSD --group DIGlsd_Contrastive --seed 1 --loss contrastive_lsd --batch_mining distance --arch resnet18_normalize

python main_original.py $DIGITS --group DIG_GenLifted --seed 1 --loss lifted --batch_mining lifted --arch resnet18
python main.py $DIGITS $LSD --group DIGlsd_GenLifted --seed 1 --loss lifted_lsd --batch_mining lifted --arch resnet18

python main_original.py $DIGITS --group DIG_SNR_Distance --seed 1 --loss snr --batch_mining distance --arch resnet18_normalize
python main.py $DIGITS $LSD --group DIGlsd_SNR_Distance --seed 1 --loss snr_lsd --batch_mining distance --arch resnet18_normalize

python main_original.py $DIGITS --group DIG_MS --seed 1 --loss multisimilarity --arch resnet18_normalize
python main.py $DIGITS $LSD --group DIGlsd_MS --seed 1 --loss multisimilarity_lsd --arch resnet18_normalize

python main_original.py $DIGITS --group DIG_Histogram --seed 1 --loss histogram --arch resnet18_normalize --loss_histogram_nbins 65
python main.py $DIGITS $LSD --group DIGlsd_Histogram --seed 1 --loss histogram_lsd --arch resnet18_normalize --loss_histogram_nbins 65

python main_original.py $DIGITS --group DIG_Softmax --seed 1 --loss softmax --arch resnet18_normalize
python main.py $DIGITS $LSD --group DIGlsd_Softmax --seed 1 --loss softmax_lsd --arch resnet18_normalize

python main_original.py $DIGITS --group DIG_SoftTriple --seed 1 --loss softtriplet --arch resnet18_normalize
python main.py $DIGITS $LSD --group DIGlsd_SoftTriple --seed 1 --loss softtriplet_lsd --arch resnet18_normalize

python main_original.py $DIGITS --group DIG_ArcFace --seed 1 --loss arcface --arch resnet18_normalize
python main.py $DIGITS $LSD --group DIGlsd_ArcFace --seed 1 --loss arcface_lsd --arch resnet18_normalize

python main_original.py $DIGITS --group DIG_Quadruplet_Distance --seed 1 --loss quadruplet --batch_mining distance --arch resnet18_normalize
python main.py $DIGITS $LSD --group DIGlsd_Quadruplet_Distance --seed 1 --loss quadruplet_lsd --batch_mining distance --arch resnet18_normalize

python main_original.py $DIGITS --group DIG_SmoothAP --seed 1 --loss ap_loss --arch resnet18_normalize
python main.py $DIGITS $LSD --group DIGlsd_SmoothAP --seed 1 --loss ap_loss_lsd --arch resnet18_normalize

python main_original.py $DIGITS --group DIG_ProxyAnchor --seed 1 --loss proxyanchor --arch resnet18_normalize
python main.py $DIGITS $LSD --group DIGlsd_ProxyAnchor --seed 1 --loss proxyanchor_lsd --arch resnet18_normalize

# label noise (30 %, symmetric): baseline vs LSD
python main_original.py $DIGITS --noisy_label --noisy_ratio 0.3 --group DIGnoisy30_Margin_Distance --seed 1 --loss margin --batch_mining distance --arch resnet18_normalize
python main.py $DIGITS $LSD --noisy_label --noisy_ratio 0.3 --group DIGnoisy30lsd_Margin_Distance --seed 1 --loss margin_lsd --batch_mining distance --arch resnet18_normalize
python main_original.py $DIGITS --noisy_label --noisy_ratio 0.3 --group DIGnoisy30_MS --seed 1 --loss multisimilarity --arch resnet18_normalize
python main.py $DIGITS $LSD --noisy_label --noisy_ratio 0.3 --group DIGnoisy30lsd_MS --seed 1 --loss multisimilarity_lsd --arch resnet18_normalize

####################################################################################################
# Seed 2
####################################################################################################
python main_original.py $DIGITS --group DIG_Triplet_Distance --seed 2 --loss triplet --batch_mining distance --arch resnet18_normalize
python main.py $DIGITS $LSD --group DIGlsd_Triplet_Distance --seed 2 --loss triplet_lsd --batch_mining distance --arch resnet18_normalize

python main_original.py $DIGITS --group DIG_Margin_Distance --seed 2 --loss margin --batch_mining distance --arch resnet18_normalize
python main.py $DIGITS $LSD --group DIGlsd_Margin_Distance --seed 2 --loss margin_lsd --batch_mining distance --arch resnet18_normalize

python main_original.py $DIGITS --group DIG_ProxyNCA --seed 2 --loss proxynca --arch resnet18_normalize
python main.py $DIGITS $LSD --group DIGlsd_ProxyNCA --seed 2 --loss proxynca_lsd --arch resnet18_normalize

python main_original.py $DIGITS --group DIG_Npair --seed 2 --loss npair --batch_mining npair --arch resnet18
python main.py $DIGITS $LSD --group DIGlsd_Npair --seed 2 --loss npair_lsd --batch_mining npair --arch resnet18

python main_original.py $DIGITS --group DIG_Angular --seed 2 --loss angular --batch_mining npair --arch resnet18
python main.py $DIGITS $LSD --group DIGlsd_Angular --seed 2 --loss angular_lsd --batch_mining npair --arch resnet18

python main_original.py $DIGITS --group DIG_Contrastive --seed 2 --loss contrastive --batch_mining distance --arch resnet18_normalize
python main.py $DIGITS $LSD --group DIGlsd_Contrastive --seed 2 --loss contrastive_lsd --batch_mining distance --arch resnet18_normalize

python main_original.py $DIGITS --group DIG_GenLifted --seed 2 --loss lifted --batch_mining lifted --arch resnet18
python main.py $DIGITS $LSD --group DIGlsd_GenLifted --seed 2 --loss lifted_lsd --batch_mining lifted --arch resnet18

python main_original.py $DIGITS --group DIG_SNR_Distance --seed 2 --loss snr --batch_mining distance --arch resnet18_normalize
python main.py $DIGITS $LSD --group DIGlsd_SNR_Distance --seed 2 --loss snr_lsd --batch_mining distance --arch resnet18_normalize

python main_original.py $DIGITS --group DIG_MS --seed 2 --loss multisimilarity --arch resnet18_normalize
python main.py $DIGITS $LSD --group DIGlsd_MS --seed 2 --loss multisimilarity_lsd --arch resnet18_normalize

python main_original.py $DIGITS --group DIG_Histogram --seed 2 --loss histogram --arch resnet18_normalize --loss_histogram_nbins 65
python main.py $DIGITS $LSD --group DIGlsd_Histogram --seed 2 --loss histogram_lsd --arch resnet18_normalize --loss_histogram_nbins 65

python main_original.py $DIGITS --group DIG_Softmax --seed 2 --loss softmax --arch resnet18_normalize
python main.py $DIGITS $LSD --group DIGlsd_Softmax --seed 2 --loss softmax_lsd --arch resnet18_normalize

python main_original.py $DIGITS --group DIG_SoftTriple --seed 2 --loss softtriplet --arch resnet18_normalize
python main.py $DIGITS $LSD --group DIGlsd_SoftTriple --seed 2 --loss softtriplet_lsd --arch resnet18_normalize

python main_original.py $DIGITS --group DIG_ArcFace --seed 2 --loss arcface --arch resnet18_normalize
python main.py $DIGITS $LSD --group DIGlsd_ArcFace --seed 2 --loss arcface_lsd --arch resnet18_normalize

python main_original.py $DIGITS --group DIG_Quadruplet_Distance --seed 2 --loss quadruplet --batch_mining distance --arch resnet18_normalize
python main.py $DIGITS $LSD --group DIGlsd_Quadruplet_Distance --seed 2 --loss quadruplet_lsd --batch_mining distance --arch resnet18_normalize

python main_original.py $DIGITS --group DIG_SmoothAP --seed 2 --loss ap_loss --arch resnet18_normalize
python main.py $DIGITS $LSD --group DIGlsd_SmoothAP --seed 2 --loss ap_loss_lsd --arch resnet18_normalize

python main_original.py $DIGITS --group DIG_ProxyAnchor --seed 2 --loss proxyanchor --arch resnet18_normalize
python main.py $DIGITS $LSD --group DIGlsd_ProxyAnchor --seed 2 --loss proxyanchor_lsd --arch resnet18_normalize

# label noise (30 %, symmetric): baseline vs LSD
python main_original.py $DIGITS --noisy_label --noisy_ratio 0.3 --group DIGnoisy30_Margin_Distance --seed 2 --loss margin --batch_mining distance --arch resnet18_normalize
python main.py $DIGITS $LSD --noisy_label --noisy_ratio 0.3 --group DIGnoisy30lsd_Margin_Distance --seed 2 --loss margin_lsd --batch_mining distance --arch resnet18_normalize
python main_original.py $DIGITS --noisy_label --noisy_ratio 0.3 --group DIGnoisy30_MS --seed 2 --loss multisimilarity --arch resnet18_normalize
python main.py $DIGITS $LSD --noisy_label --noisy_ratio 0.3 --group DIGnoisy30lsd_MS --seed 2 --loss multisimilarity_lsd --arch resnet18_normalize
