"""The training dataset with flipped labels (`--noisy_label`), built after the clean index structure.

`avail_classes` and `n_files` stay those of the clean set; `image_dict` is rebuilt under the noisy
labels with an (possibly empty) list for every class, each entry keeping its global index.
"""
from datasets.basic_dataset_scaffold import BaseDataset
from datasets.label_noise import flip_labels


class NoisyDataset(BaseDataset):

    def init_setup(self):
        super().init_setup()
        print('Preparing noisy label for training set ...')
        print('Sym noisy!' if self.pars.noisy_type == 'symmetric' else 'Pair-flip noisy!')
        noisy_labels = flip_labels([label for _, label in self.image_list], len(self.avail_classes),
                                   self.pars.noisy_ratio, self.pars.seed, self.pars.noisy_type)
        self.image_list = [(path, noisy) for (path, _), noisy in zip(self.image_list, noisy_labels)]
        self.image_paths = self.image_list
        self.image_dict = {key: [] for key in self.avail_classes}
        for index, (path, label) in enumerate(self.image_list):
            self.image_dict[label].append([path, index])
