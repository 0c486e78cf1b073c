"""Command-line flags of both trainers: the reference's, with its defaults, plus this framework's additions.

Groups are registered in the reference's order (basic, batch creation, batch mining, loss-specific,
W&B, LSD, noisy labels), which fixes the key order of Parameter_Info.txt, hypa.pkl and the W&B config.
Defaults are kept as literally written in the reference: argparse does not convert non-string
defaults, so e.g. `--fc_lr` stays the int -1 when not given.
No flag may start with `--source` other than `--source_path`: users type `--source $datapath`.
"""
import argparse
import os


def basic_training_parameters(parser):
    # Dataset
    parser.add_argument('--dataset', default='cub200', type=str,
                        help='Dataset to use: cub200, cars196, online_products, inshop, inaturalist (folders under '
                             '--source_path), digits (embedded, nothing to download), csv (--source_path is an '
                             'open-metric-learning CSV file) or folder (--source_path is a <class>/<images> '
                             'folder tree); see docs/own_data.md.')
    parser.add_argument('--use_tv_split', action='store_true',
                        help='Split the training classes/samples into training and validation.')
    parser.add_argument('--tv_split_by_samples', action='store_true',
                        help='Validation = a share of the samples of every class instead of a share of the classes.')
    parser.add_argument('--tv_split_perc', default=0.8, type=float,
                        help='Share kept for training when splitting.')
    parser.add_argument('--cv_folds', default=0, type=int,
                        help='K > 1: class-disjoint cross-validation; the training classes (with --tv_split_by_samples: '
                             "every class's images) form K interleaved folds, --cv_fold validates. Implies "
                             '--use_tv_split and replaces --tv_split_perc; 0 = no folds.')
    parser.add_argument('--cv_fold', default=0, type=int, help='The validation fold, 0..K-1 (with --cv_folds K).')
    parser.add_argument('--augmentation', default='base', type=str,
                        help='Training augmentation: base, adv, big, red.')

    # General training
    parser.add_argument('--lr', default=0.00001, type=float, help='Learning rate of the network.')
    parser.add_argument('--fc_lr', default=-1, type=float,
                        help='If >= 0: own learning rate for the embedding layer (last_linear).')
    parser.add_argument('--decay', default=0.0004, type=float, help='Weight decay (L2) of the network.')
    parser.add_argument('--n_epochs', default=150, type=int,
                        help='Number of training epochs; also the denominator of the LSD weight ramp.')
    parser.add_argument('--kernels', default=6, type=int,
                        help='Number of DataLoader workers; also the faiss thread count.')
    parser.add_argument('--bs', default=112, type=int, help='Mini-batch size.')
    parser.add_argument('--seed', default=1, type=int,
                        help='Seed of python, numpy and torch; also the label-noise seed.')
    parser.add_argument('--scheduler', default='step', type=str,
                        help="'none' disables the LR schedule; 'cosine' is cosine decay per epoch after "
                             "--warmup_epochs; anything else is MultiStepLR.")
    parser.add_argument('--gamma', default=0.3, type=float, help='MultiStepLR decay factor.')
    parser.add_argument('--tau', default=[1000], nargs='+', type=int, help='MultiStepLR milestones (epochs).')

    # Loss / optimisation
    parser.add_argument('--optim', default='adam', type=str,
                        help='Optimizer: adam, sgd, or adamw (decoupled weight decay at rate --decay).')
    parser.add_argument('--loss', default='margin', type=str,
                        help='Training criterion, see criteria/ (LSD variants end in _lsd).')
    parser.add_argument('--batch_mining', default='distance', type=str,
                        help='Batch miner for tuple-based criteria, see batch_mining/.')

    # Network
    parser.add_argument('--embed_dim', default=128, type=int, help='Embedding dimensionality.')
    parser.add_argument('--not_pretrained', action='store_true', help='Do not load ImageNet weights.')
    parser.add_argument('--arch', default='resnet50_frozen_normalize', type=str,
                        help='Backbone (resnet50, googlenet, bninception, resnet18) plus tokens '
                             '_frozen, _normalize, _he, double; or timm/<any timm model name>[.<tag>] '
                             'plus _frozen, _normalize.')

    # Evaluation
    parser.add_argument('--no_train_metrics', action='store_true',
                        help='Skip the per-epoch evaluation of the training data.')
    parser.add_argument('--evaluate_on_gpu', action='store_true',
                        help='Compute metrics on the GPU (faiss-gpu, or torch on CUDA).')
    parser.add_argument('--evaluation_metrics', nargs='+', type=str,
                        default=['e_recall@1', 'e_recall@5', 'e_recall@10', 'nmi', 'f1', 'mAP_1000',
                                 'mAP_lim', 'mAP_c', 'dists@intra', 'dists@inter',
                                 'dists@intra_over_inter', 'rho_spectrum@0', 'rho_spectrum@-1',
                                 'rho_spectrum@1', 'rho_spectrum@2', 'rho_spectrum@10'],
                        help='Metrics computed on every evaluated set.')
    parser.add_argument('--storage_metrics', nargs='+', default=['e_recall@1'], type=str,
                        help='A checkpoint is written whenever one of these improves.')
    parser.add_argument('--evaltypes', nargs='+', default=['discriminative'], type=str,
                        help='Names of the embeddings to evaluate.')
    parser.add_argument('--no_plots', action='store_true',
                        help='Write no progression plots (Progression_Plots/*.svg: one per logged group, redrawn '
                             'every epoch, ~0.1 s each); the CSV logs hold the same values.')
    parser.add_argument('--make_recall_plot', action='store_true',
                        help='Save the sample-recoveries figure of the test set at every evaluation.')

    # Setup
    parser.add_argument('--gpu', default=[0], nargs='+', type=int, help='GPU index (first entry used).')
    parser.add_argument('--savename', default='group_plus_seed', type=str,
                        help='Run folder name; group_plus_seed = <group>_s<seed> with --log_online, '
                             'otherwise a date-based name.')
    parser.add_argument('--source_path', default=os.getcwd() + '/../../Datasets', type=str,
                        help='Parent folder of the dataset folders (abbreviation: --source).')
    parser.add_argument('--save_path', default=os.getcwd() + '/Training_Results', type=str,
                        help='Parent folder of all run folders.')
    parser.add_argument('--resume', default='', type=str,
                        help='Run folder of a killed run to continue from its last completed epoch.')
    return parser


def batch_creation_parameters(parser):
    parser.add_argument('--data_sampler', default='class_random', type=str,
                        help='Batch sampler: class_random, full_random, greedy_coreset, d2_coreset, '
                             'disthist_batchmatch, fid_batchmatch.')
    parser.add_argument('--samples_per_class', default=2, type=int,
                        help='Samples per drawn class (class_random); must divide --bs.')
    parser.add_argument('--data_batchmatch_bigbs', default=512, type=int,
                        help='Size of the large candidate pool summarised into one batch.')
    parser.add_argument('--data_batchmatch_ncomps', default=10, type=int,
                        help='Number of candidate batches compared.')
    parser.add_argument('--data_storage_no_update', action='store_true',
                        help="Do not refresh the sampler's embedding storage with each batch.")
    parser.add_argument('--data_d2_coreset_lambda', default=1, type=float, help='D2 coreset regulariser.')
    parser.add_argument('--data_gc_coreset_lim', default=1e-9, type=float, help='Greedy coreset distance limit.')
    parser.add_argument('--data_sampler_lowproj_dim', default=-1, type=int,
                        help='Random projection dimension for coreset search (-1 = off).')
    parser.add_argument('--data_sim_measure', default='euclidean', type=str,
                        help='Distance measure for batch selection.')
    parser.add_argument('--data_gc_softened', action='store_true', help='Soft greedy coreset.')
    parser.add_argument('--data_idx_full_prec', action='store_true',
                        help='Recompute the whole sampler storage at the start of every epoch.')
    parser.add_argument('--data_mb_mom', default=-1, type=float, help='Momentum of memory-bank updates.')
    parser.add_argument('--data_mb_lr', default=1, type=float, help='Deprecated.')
    return parser


def batchmining_specific_parameters(parser):
    parser.add_argument('--miner_distance_lower_cutoff', default=0.5, type=float,
                        help='Distance miner: distances below are clipped.')
    parser.add_argument('--miner_distance_upper_cutoff', default=1.4, type=float,
                        help='Distance miner: upper cutoff.')
    parser.add_argument('--miner_rho_distance_lower_cutoff', default=0.5, type=float,
                        help='Rho-distance miner: lower cutoff.')
    parser.add_argument('--miner_rho_distance_upper_cutoff', default=1.4, type=float,
                        help='Rho-distance miner: upper cutoff.')
    parser.add_argument('--miner_rho_distance_cp', default=0.2, type=float,
                        help='Rho-distance miner: probability of replacing a negative by a positive.')
    parser.add_argument('--miner_parametric_mode', default='uniform', type=str,
                        help='Parametric miner: initial distribution (uniform, hards, semihards, veryhards).')
    parser.add_argument('--miner_parametric_n_support', default=30, type=int,
                        help='Parametric miner: number of support points of the distance grid.')
    parser.add_argument('--miner_parametric_support_lim', default=[0.1, 1.4], nargs=2, type=float,
                        help='Parametric miner: lower and upper end of the distance grid.')
    return parser


def loss_specific_parameters(parser):
    parser.add_argument('--loss_contrastive_pos_margin', default=0, type=float, help='Contrastive positive margin.')
    parser.add_argument('--loss_contrastive_neg_margin', default=1, type=float, help='Contrastive negative margin.')
    parser.add_argument('--loss_triplet_margin', default=0.2, type=float, help='Triplet margin.')
    parser.add_argument('--loss_margin_margin', default=0.2, type=float, help='Margin of the margin loss.')
    parser.add_argument('--loss_margin_beta_lr', default=0.0005, type=float, help='Learning rate of the class margins beta.')
    parser.add_argument('--loss_margin_beta', default=1.2, type=float, help='Initial beta.')
    parser.add_argument('--loss_margin_nu', default=0, type=float, help='Regularisation weight on beta.')
    parser.add_argument('--loss_margin_beta_constant', action='store_true', help='Keep beta fixed.')
    parser.add_argument('--loss_proxynca_lrmulti', default=50, type=float, help='Proxy lr = lr x this.')
    parser.add_argument('--loss_npair_l2', default=0.005, type=float, help='L2 weight of N-pair.')
    parser.add_argument('--loss_angular_alpha', default=45, type=float, help='Angular margin in degrees.')
    parser.add_argument('--loss_angular_npair_ang_weight', default=2, type=float, help='Angular vs N-pair weight.')
    parser.add_argument('--loss_angular_npair_l2', default=0.005, type=float, help='L2 weight in the angular loss.')
    parser.add_argument('--loss_multisimilarity_pos_weight', default=2, type=float, help='MS positive weight.')
    parser.add_argument('--loss_multisimilarity_neg_weight', default=40, type=float, help='MS negative weight.')
    parser.add_argument('--loss_multisimilarity_margin', default=0.1, type=float, help='MS margin.')
    parser.add_argument('--loss_multisimilarity_thresh', default=0.5, type=float, help='MS threshold.')
    parser.add_argument('--loss_lifted_neg_margin', default=1, type=float, help='Lifted-structure margin.')
    parser.add_argument('--loss_lifted_l2', default=0.005, type=float, help='Lifted-structure L2 weight.')
    parser.add_argument('--loss_quadruplet_margin_alpha_1', default=0.2, type=float, help='First quadruplet margin.')
    parser.add_argument('--loss_quadruplet_margin_alpha_2', default=0.2, type=float, help='Second quadruplet margin.')
    parser.add_argument('--loss_softtriplet_n_centroids', default=2, type=int, help='SoftTriple proxies per class.')
    parser.add_argument('--loss_softtriplet_margin_delta', default=0.01, type=float, help='SoftTriple margin.')
    parser.add_argument('--loss_softtriplet_gamma', default=0.1, type=float, help='SoftTriple intra-class weight.')
    parser.add_argument('--loss_softtriplet_lambda', default=8, type=float, help='SoftTriple temperature.')
    parser.add_argument('--loss_softtriplet_reg_weight', default=0.2, type=float, help='SoftTriple regulariser weight.')
    parser.add_argument('--loss_softtriplet_lrmulti', default=1, type=float, help='SoftTriple centroid lr = lr x this.')
    parser.add_argument('--loss_softmax_lr', default=0.00001, type=float, help='Normalised-softmax proxy lr.')
    parser.add_argument('--loss_softmax_temperature', default=0.05, type=float, help='Normalised-softmax temperature.')
    parser.add_argument('--loss_histogram_nbins', default=65, type=int, help='Histogram loss bins.')
    parser.add_argument('--loss_snr_margin', default=0.2, type=float, help='SNR triplet margin.')
    parser.add_argument('--loss_snr_reg_lambda', default=0.005, type=float, help='SNR regulariser.')
    parser.add_argument('--loss_arcface_lr', default=0.0005, type=float, help='ArcFace proxy lr.')
    parser.add_argument('--loss_arcface_angular_margin', default=0.5, type=float, help='ArcFace angular margin (rad).')
    parser.add_argument('--loss_arcface_feature_scale', default=16, type=float, help='ArcFace feature scale.')
    return parser


def wandb_parameters(parser):
    parser.add_argument('--log_online', action='store_true', help='Also log to Weights & Biases.')
    parser.add_argument('--wandb_key', default='Your_Key', type=str,
                        help='W&B API key (or set WANDB_API_KEY); never written to disk.')
    parser.add_argument('--project', default='Sample_Project', type=str, help='W&B project.')
    parser.add_argument('--group', default='Sample_Group', type=str,
                        help='W&B group; part of the default run folder name.')
    return parser


def lsd_parameters(parser):
    parser.add_argument('--kd_tau', default=1.0, type=float, help='Temperature of the listwise distillation.')
    parser.add_argument('--kd_alpha', default=200.0, type=float, help='Weight of the distillation term.')
    parser.add_argument('--kd_beta', default=1.0, type=float,
                        help="Scale of the negatives' similarities in the distillation rows.")
    parser.add_argument('--f_distillation_standard', action='store_true',
                        help='Standard distillation: treat --kd_beta as 1.0.')
    return parser


def noisy_label_parameters(parser):
    parser.add_argument('--noisy_label', action='store_true', help='Train on corrupted training labels.')
    parser.add_argument('--noisy_ratio', default=0.0, type=float, help='Share of training labels flipped.')
    parser.add_argument('--noisy_type', default='symmetric', type=str,
                        help='Noise transition matrix: symmetric or pairflip.')
    return parser


def speed_parameters(parser):
    """Flags of this framework beyond the reference: precision, data pipeline, evaluation cost.
    Registered last, so the reference's flags keep their order in Parameter_Info.txt and hypa.pkl."""
    parser.add_argument('--amp', default='off', choices=('off', 'bf16', 'fp16'),
                        help='Mixed precision for the backbone (forward/backward), the teacher and the '
                             'evaluation embedding; losses stay float32. off = float32 throughout.')
    parser.add_argument('--channels_last', default='auto', choices=('auto', 'on', 'off'),
                        help='channels_last memory format for the backbone; auto = on with --amp on CUDA.')
    parser.add_argument('--data_pipeline', default='fast', choices=('fast', 'reference'),
                        help='fast: uint8 decoding and augmentation, normalisation on the device, '
                             'augmentation drawn from (seed, epoch, sample); reference: the published '
                             'PIL/torchvision pipeline, for exact reproduction.')
    parser.add_argument('--eval_cache', default='none', choices=('none', 'cpu', 'gpu'),
                        help='Keep the decoded evaluation crops after the first pass (in CPU or GPU memory).')
    parser.add_argument('--eval_bs', default=0, type=int,
                        help='Batch size of the evaluation passes; 0 = --bs.')
    parser.add_argument('--evaluate_every', default=1, type=int,
                        help='Evaluate every N epochs (the last epoch is always evaluated).')
    parser.add_argument('--batch_chunk', default=0, type=int,
                        help='Embed each batch (each process its slice) in chunks of this many images without '
                             'gradient, compute the loss on the whole batch, then back-propagate chunk by chunk '
                             'with a second forward pass: the whole batch\'s gradient with the activation memory '
                             'of one chunk (docs/large_batches.md). 0 = off.')
    return parser


def backbone_recipe_parameters(parser):
    """Flags for timm backbones (`--arch timm/<model name>`) and the transformer recipe beside the
    reference's. Registered after every other group; each default leaves a run as it was."""
    parser.add_argument('--pretrained_weights', default='', type=str,
                        help='Local state dict (.safetensors or .pth) of the backbone to start from instead of '
                             'downloading; works for every --arch (for clusters without internet).')
    parser.add_argument('--input_size', default=0, type=int,
                        help='timm backbones: square input size in pixels; 0 = the size of the pretrained config.')
    parser.add_argument('--no_head', action='store_true',
                        help='timm backbones: the pooled features are the embedding (no Linear head); '
                             '--embed_dim must equal their number.')
    parser.add_argument('--warmup_epochs', default=0, type=int,
                        help='--scheduler cosine: epochs of linear learning-rate warm-up before the cosine decay.')
    parser.add_argument('--clip_grad', default=0.0, type=float,
                        help='Clip the L2 norm of the backbone gradient to this value (after unscaling under '
                             'fp16); 0 = no clipping.')
    parser.add_argument('--freeze_patch_embed', action='store_true',
                        help='timm ViTs: do not train the patch embedding (as Hyp-ViT does).')
    parser.add_argument('--grad_checkpointing', action='store_true',
                        help="timm backbones: timm's gradient checkpointing (less memory, more compute).")
    return parser


def proxyanchor_and_memory_parameters(parser):
    """Proxy-Anchor (Kim et al., CVPR 2020) and the cross-batch memory (XBM, Wang et al., CVPR 2020).
    Registered after the framework's other groups, so earlier flags keep their order."""
    parser.add_argument('--loss_proxyanchor_alpha', default=32, type=float, help='Proxy-Anchor scale alpha.')
    parser.add_argument('--loss_proxyanchor_delta', default=0.1, type=float, help='Proxy-Anchor margin delta.')
    parser.add_argument('--loss_proxyanchor_lrmulti', default=100, type=float,
                        help='Proxy-Anchor proxy lr = lr x this (the authors use 100).')
    parser.add_argument('--loss_proxyanchor_warmup_epochs', default=1, type=int,
                        help='Proxy-Anchor warm-up: for this many first epochs only the embedding layer '
                             '(last_linear) and the proxies train, as in the authors\' code; 0 = off.')
    parser.add_argument('--xbm_size', default=0, type=int,
                        help='Cross-batch memory: number of past (global-batch) embeddings the pair losses '
                             'also compare the batch against; 0 = no memory.')
    parser.add_argument('--xbm_start', default=0, type=int,
                        help='Cross-batch memory: the training iteration (counted over the whole run) from '
                             'which the memory is filled and used.')
    return parser


def display_parameters(parser):
    """What the run shows while it runs; never changes a logged number."""
    parser.add_argument('--progress', default='auto', choices=('auto', 'bar', 'log', 'off'),
                        help='Progress of every training epoch and embedding pass: bar = tqdm bars (with the '
                             'running loss), log = a plain line every 30 s (Slurm and sweep logs), off = none; '
                             'auto = bar on a terminal, log otherwise.')
    return parser


def build_parser():
    parser = argparse.ArgumentParser()
    for add_group in (basic_training_parameters, batch_creation_parameters,
                      batchmining_specific_parameters, loss_specific_parameters, wandb_parameters,
                      lsd_parameters, noisy_label_parameters, speed_parameters, backbone_recipe_parameters,
                      proxyanchor_and_memory_parameters, display_parameters):
        parser = add_group(parser)
    return parser


def read_arguments(argv=None):
    """Parse `argv` (default: sys.argv[1:]) with every flag of both trainers; a fold is a validation split."""
    opt = build_parser().parse_args(argv)
    if opt.cv_folds:
        opt.use_tv_split = True
    return opt
