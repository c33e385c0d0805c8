#include <filesystem>
#include <iostream>

#include "app/commands.h"

namespace fs = std::filesystem;

namespace reslab {

int run_export(const ExportOptions& options) {
  const ExportResult r = export_run(options.run_dir, options.to);
  const std::string module = (fs::path(scripts_dir()) / "reslab_torch.py").string();
  std::cout << "Exported " << options.run_dir << " (" << r.model << "): " << r.tensors << " tensors in "
            << (r.style == NameStyle::kTorchvision ? "torchvision's" : "the CIFAR reference's") << " names\n"
            << "  " << r.state_dict << "  the state_dict (torch.load)\n"
            << "  " << r.architecture << "  the architecture, for " << module << "\n"
            << "  " << r.check << "  a batch and reslab's logits on it\n";
  if (!r.torchvision.empty()) {
    std::cout << "It loads into torchvision as it is:\n"
              << "  net = torchvision.models." << r.torchvision << "(num_classes=N); "
              << "net.load_state_dict(torch.load(\"" << r.state_dict << "\"))\n";
  }
  std::cout << "In Python (sys.path += [\"" << fs::path(module).parent_path().string() << "\"]):\n"
            << "  import reslab_torch; net = reslab_torch.load(\"" << r.state_dict << "\")\n"
            << "Check the logits: python3 " << module << " check " << r.state_dict << "\n";
  return 0;
}

int run_import(const ImportOptions& options) {
  const ImportResult r = import_state_dict(options);
  if (!r.note.empty()) std::cout << "Note: " << r.note << "\n";
  std::cout << "Imported " << options.file << " as " << r.model << " (" << r.tensors << " tensors, " << r.classes
            << " classes) into " << r.run_dir << "/ (config.json, model.pt, import.json)\n"
            << "Probe it: reslab analyze all " << r.run_dir << (options.data_dir.empty() ? " --data DIR" : "") << "\n";
  return 0;
}

}  // namespace reslab
