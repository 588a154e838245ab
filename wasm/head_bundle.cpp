#include "head_bundle.h"

#include "engine.h"
#include "error.h"

namespace petal {

bool is_head_only(const Bundle& b) {
  auto it = b.metadata.find("backbone");
  return it != b.metadata.end() && it->second == "external";
}

Bundle head_only_bundle(const std::map<std::string, std::string>& backbone_metadata, const Head* head,
                        const std::vector<std::string>& class_names, const std::vector<float>& bank_features,
                        const std::vector<int32_t>& bank_labels) {
  Bundle b;
  for (auto& [k, v] : backbone_metadata)
    if (k != "class_names" && k != "head_shape") b.metadata[k] = v;
  b.metadata["format"] = "petal-bundle";
  b.metadata["format_version"] = std::to_string(kBundleFormatVersion);
  b.metadata["backbone"] = "external";
  if (head) {
    validate_class_names(class_names);
    if (int(class_names.size()) != head->classes()) throw Error("class names do not match the head's outputs");
    head->save(b);
    b.metadata["class_names"] = class_names_json(class_names);
    b.metadata["head_shape"] = std::to_string(head->in()) + "x" + std::to_string(head->hidden()) + "x" + std::to_string(head->classes());
  }
  if (!bank_labels.empty()) {
    if (bank_features.size() % bank_labels.size() != 0) throw Error("feature bank size mismatch");
    Tensor f, l;
    f.shape = {bank_labels.size(), bank_features.size() / bank_labels.size()};
    f.data = bank_features;
    f.stored = DType::F16;
    l.shape = {bank_labels.size()};
    l.data.assign(bank_labels.begin(), bank_labels.end());
    l.stored = DType::I32;
    b.tensors["bank.features"] = std::move(f);
    b.tensors["bank.labels"] = std::move(l);
  }
  return b;
}

Bundle merge_head_bundle(Bundle backbone, const Bundle& head_bundle) {
  for (auto& [k, v] : head_bundle.tensors) backbone.tensors[k] = v;
  for (auto& [k, v] : head_bundle.metadata)
    if (k != "backbone") backbone.metadata[k] = v;
  return backbone;
}

}  // namespace petal
