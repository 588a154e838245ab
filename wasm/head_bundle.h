// Head-only bundles (model/README.md, "Kinds of bundle"): the one place that says what one holds
// and how it joins a backbone. `Engine::to_bundle`, `petal train` and `petal fewshot` write them
// with head_only_bundle; the CLI's load_model joins them with a backbone with merge_head_bundle.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "bundle.h"
#include "head.h"

namespace petal {

// Whether `b` holds only a classifier head (metadata backbone=external) and needs a backbone.
bool is_head_only(const Bundle& b);

// A head-only bundle: the backbone's metadata (graph, preprocessing, …; the class_names and
// head_shape of a head it carried are left out), format and format_version of this build,
// backbone=external; then the head's tensors (Head::save), class_names and head_shape when `head`
// is given (the names are validated and must match its outputs), and the feature bank when it has
// rows: bank.features [rows, dim] stored F16, bank.labels [rows] stored I32.
Bundle head_only_bundle(const std::map<std::string, std::string>& backbone_metadata, const Head* head,
                        const std::vector<std::string>& class_names, const std::vector<float>& bank_features = {},
                        const std::vector<int32_t>& bank_labels = {});

// A full model from a backbone bundle and a head-only one: the head bundle's tensors and its
// metadata (all but "backbone") added to the backbone's, replacing any of the same name.
Bundle merge_head_bundle(Bundle backbone, const Bundle& head_bundle);

}  // namespace petal
