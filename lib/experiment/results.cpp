#include "experiment/results.h"

#include <torch/version.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <optional>
#include <ostream>
#include <set>
#include <sstream>
#include <tuple>

#include "experiment/config.h"
#include "experiment/stats.h"
#include "train/allocator.h"
#include "train/kernels.h"

#ifndef RESLAB_VERSION
#define RESLAB_VERSION "unknown"
#endif

namespace reslab {

nlohmann::json version_info() { return {{"reslab", RESLAB_VERSION}, {"libtorch", TORCH_VERSION}}; }

nlohmann::json make_summary(const RunOutcome& o) {
  const auto optional_json = [](const std::optional<double>& v) {
    return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
  };
  const RunConfig& run = o.run;
  const TrainState& state = o.state;
  nlohmann::json summary = {
      {"experiment", run.experiment},
      {"run", run.name},
      {"model", run.model.name},
      {"depth", o.model.depth()},
      {"residual", o.model.residual()},
      {"shortcut", run.model.shortcut},
      {"params", count_parameters(o.model)},
      {"flops", o.model.macs()},
      {"dataset", run.data.dataset},
      {"train_examples", o.train_examples},
      {"iterations", state.iter},
      {"epochs", state.epoch()},
      {"final",
       {{"train_error", optional_json(o.train_error)},
        {"val_error", optional_json(o.val_error)},
        {"test_error", optional_json(o.test_error)}}},
      {"best_test_error", optional_json(o.best_test_error)},
      {"seconds", o.seconds},
      {"train_seconds", state.train_seconds},
      {"eval_seconds", o.eval_seconds},
      {"img_per_s", state.train_seconds > 0 ? state.iter * run.optim.batch / state.train_seconds : 0.0},
      {"world_size", o.world_size},
      {"status", to_string(state.status)},
      {"seed", run.seed},
      {"threads", o.threads},
      {"malloc", allocator_policy()},
      {"conv", o.conv},
      {"device", run.device},
      {"machine", machine_info()},
      {"retries", o.retries},
      {"versions", version_info()}};
  if (!o.kernels.is_null()) summary["kernels"] = o.kernels;
  if (!o.cuda_graphs.is_null()) summary["cuda_graphs"] = o.cuda_graphs;
  if (state.diverged_at) {
    summary["diverged_at"] = *state.diverged_at;
    summary["last_finite_loss"] = optional_json(state.last_finite_loss);
  }
  return summary;
}

namespace {

/// The model's name with a plain family named as its residual twin: plain56-k1 and resnet56-k1 share a row.
std::string twin_name(const std::string& model) {
  const auto at = model.find("plain");
  return at == std::string::npos ? model : model.substr(0, at) + "resnet" + model.substr(at + 5);
}

/// What a name adds after its depth: "-k1-noaffine" for resnet56-k1-noaffine, "" for resnet56.
std::string tags_of(const std::string& model) {
  const size_t digits = model.find_first_of("0123456789");
  const size_t dash = digits == std::string::npos ? std::string::npos : model.find('-', digits);
  return dash == std::string::npos ? "" : model.substr(dash);
}

/// `config` without train.KEY (and without "train" when nothing else is left in it).
void erase_train_key(nlohmann::json& config, const char* key) {
  if (!config.value("train", nlohmann::json()).is_object()) return;
  config["train"].erase(key);
  if (config["train"].empty()) config.erase("train");
}

/// The part of a run's configuration that makes it a row: everything but the seed, the names and where it ran.
nlohmann::json row_config(const RunResult& run) {
  nlohmann::json c = run.config.is_object() ? run.config : nlohmann::json::object();
  for (const char* key : {"experiment", "name", "seed", "threads", "device"}) c.erase(key);
  erase_train_key(c, "cuda_graphs");  // how the kernels were launched, not what they computed
  if (!c.value("model", nlohmann::json()).is_object()) c["model"] = nlohmann::json::object();
  const auto& named = c["model"].value("name", nlohmann::json());
  const auto& from_summary = run.summary.value("model", nlohmann::json());
  const std::string model = from_summary.is_string() ? from_summary.get<std::string>()
                            : named.is_string()      ? named.get<std::string>()
                                                     : "";
  c["model"]["name"] = twin_name(model);
  return c;
}

struct Entry {
  std::optional<uint64_t> seed;
  std::string run;
  nlohmann::json train, test;
  std::string status;
};

struct Row {
  int64_t depth = 0;
  std::string model;  ///< the residual twin's name
  nlohmann::json config;
  std::map<bool, std::vector<Entry>> sides;  ///< false: plain, true: residual
};

std::vector<double> numbers(const std::vector<Entry>& entries, nlohmann::json Entry::*field) {
  std::vector<double> out;
  for (const auto& e : entries) {
    if ((e.*field).is_number()) out.push_back((e.*field).get<double>());
  }
  return out;
}

nlohmann::json side_json(const std::vector<Entry>& entries) {
  const auto train = describe(numbers(entries, &Entry::train));
  const auto test = describe(numbers(entries, &Entry::test));
  nlohmann::json seeds = nlohmann::json::array(), per_seed = nlohmann::json::array(),
                 statuses = nlohmann::json::array();
  for (const auto& e : entries) {
    const auto seed = e.seed ? nlohmann::json(*e.seed) : nlohmann::json(nullptr);
    seeds.push_back(seed);
    per_seed.push_back(
        {{"seed", seed}, {"run", e.run}, {"train_error", e.train}, {"test_error", e.test}, {"status", e.status}});
    statuses.push_back(e.status);
  }
  return {{"train_error", train["mean"]},
          {"train_error_sd", train["sd"]},
          {"test_error", test["mean"]},
          {"test_error_sd", test["sd"]},
          {"seeds", seeds},
          {"per_seed", per_seed},
          {"runs", entries.size()},
          {"status", statuses}};
}

/// a - b per seed, over the seeds both have a number for (a seed's first run on each side).
nlohmann::json paired(const std::vector<Entry>& a, const std::vector<Entry>& b, nlohmann::json Entry::*field) {
  std::map<uint64_t, double> by_seed;
  for (const auto& e : b) {
    if (e.seed && (e.*field).is_number()) by_seed.emplace(*e.seed, (e.*field).get<double>());
  }
  std::vector<double> differences;
  std::set<uint64_t> used;
  for (const auto& e : a) {
    if (!e.seed || !(e.*field).is_number() || !used.insert(*e.seed).second) continue;
    const auto it = by_seed.find(*e.seed);
    if (it != by_seed.end()) differences.push_back((e.*field).get<double>() - it->second);
  }
  return paired_difference(differences);
}

nlohmann::json paired_errors(const std::vector<Entry>& a, const std::vector<Entry>& b) {
  return {{"train_error", paired(a, b, &Entry::train)}, {"test_error", paired(a, b, &Entry::test)}};
}

/// The least-squares slope of `field` against depth, per seed, in points per 10 layers, over the seeds that have a
/// number at every depth of `by_depth` (a seed's first run at each); with the slopes' mean, sd and t interval
/// (paired_difference's form), the depths and the seeds. One number for Figure 6's ordering: positive when the
/// deeper nets of the family err more. Null below three depths.
nlohmann::json depth_slope(const std::map<int64_t, const std::vector<Entry>*>& by_depth, nlohmann::json Entry::*field) {
  if (by_depth.size() < 3) return nullptr;
  std::map<uint64_t, std::map<int64_t, double>> values;  // seed -> depth -> value
  for (const auto& [depth, entries] : by_depth) {
    for (const auto& e : *entries) {
      if (e.seed && (e.*field).is_number()) values[*e.seed].emplace(depth, (e.*field).get<double>());
    }
  }
  std::vector<double> slopes;
  nlohmann::json seeds = nlohmann::json::array();
  for (const auto& [seed, at] : values) {
    if (at.size() != by_depth.size()) continue;  // a seed missing at some depth would tilt the fit
    double mean_depth = 0, mean_value = 0;
    for (const auto& [depth, value] : at) mean_depth += static_cast<double>(depth), mean_value += value;
    mean_depth /= static_cast<double>(at.size());
    mean_value /= static_cast<double>(at.size());
    double sxy = 0, sxx = 0;
    for (const auto& [depth, value] : at) {
      const double dx = static_cast<double>(depth) - mean_depth;
      sxy += dx * (value - mean_value);
      sxx += dx * dx;
    }
    slopes.push_back(10.0 * sxy / sxx);
    seeds.push_back(seed);
  }
  auto out = paired_difference(slopes);
  out["seeds"] = seeds;
  return out;
}

std::string format_value(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_float()) {
    std::ostringstream text;
    text << v.get<double>();  // as run names write a grid's values
    return text.str();
  }
  return v.dump();
}

/// Removes `config`'s parameter groups where they are `model`'s defaults (Fixup's), which to_json writes with
/// the model: a -fixup row then differs from its baseline's by the model alone.
void drop_default_groups(nlohmann::json& config, const std::string& model) {
  if (!config.is_object() || !config.contains("optim") || !config["optim"].is_object() ||
      !config["optim"].contains("param_groups")) {
    return;
  }
  nlohmann::json defaults = nlohmann::json::array();
  for (const auto& g : default_param_groups(model)) defaults.push_back(to_json(g));
  if (config["optim"]["param_groups"] == defaults) config["optim"].erase("param_groups");
}

/// What tells rows apart besides the model: the configuration keys whose values differ between rows, written as
/// the run names write the grid's axes ("-B", "-lr0.05", "-b32"; any other key as "-key=value").
std::map<std::string, std::string> row_labels(const std::map<std::string, Row>& rows) {
  std::map<std::string, std::set<std::string>> values;
  std::map<std::string, nlohmann::json> flat;
  for (const auto& [key, row] : rows) {
    auto c = row.config;
    c["model"].erase("name");           // the model's tags label it; its other settings (the shortcut) may vary
    drop_default_groups(c, row.model);  // they come with the model's tag: they label nothing more
    flat[key] = c.flatten();
  }
  std::set<std::string> paths;
  for (const auto& [key, f] : flat) {
    for (const auto& [path, _] : f.items()) paths.insert(path);
  }
  std::vector<std::string> varying;
  for (const auto& path : paths) {
    std::set<std::string> seen;
    for (const auto& [key, f] : flat) seen.insert(f.contains(path) ? f[path].dump() : "(absent)");
    if (seen.size() > 1) varying.push_back(path);
  }
  const std::map<std::string, std::string> axis_prefix = {
      {"/model/shortcut", ""}, {"/optim/lr", "lr"}, {"/optim/batch", "b"}, {"/train/precision", ""}};
  std::map<std::string, std::string> labels;
  for (const auto& [key, row] : rows) {
    std::string label = tags_of(row.model);
    for (const auto& path : varying) {
      const auto& f = flat[key];
      // float32, the default precision, is not written: its rows read "-float32" beside "-bf16".
      const std::string value = f.contains(path)             ? format_value(f[path])
                                : path == "/train/precision" ? "float32"
                                                             : "none";
      const auto axis = axis_prefix.find(path);
      label += "-" + (axis != axis_prefix.end() ? axis->second : path.substr(path.rfind('/') + 1) + "=") + value;
    }
    labels[key] = label;
  }
  return labels;
}

}  // namespace

std::vector<std::string> experiment_run_names(const nlohmann::json& config, const std::string& path) {
  if (!config.is_object() || !config.value("runs", nlohmann::json()).is_array() ||
      !config.value("name", nlohmann::json()).is_string() ||
      !config.value("description", nlohmann::json("")).is_string()) {
    throw std::runtime_error(path + ": not an experiment's config.json (expected 'name' and 'runs')");
  }
  std::vector<std::string> names;
  for (size_t i = 0; i < config["runs"].size(); ++i) {
    const auto& run = config["runs"][i];
    const std::string where = path + ": runs[" + std::to_string(i) + "]";
    if (!run.is_object() || !run.value("name", nlohmann::json()).is_string()) {
      throw std::runtime_error(where + ": expected a run's configuration with its 'name' (a string)");
    }
    check_name(run["name"], where + ".name");  // it names a folder under the experiment's: nothing else is read
    names.push_back(run["name"]);
  }
  return names;
}

void check_summary(const nlohmann::json& summary, const std::string& path) {
  auto bad = [&](const std::string& key, const std::string& expected) {
    const std::string shown = summary.is_object() && summary.contains(key) ? shown_json(summary.at(key)) : "(missing)";
    throw std::runtime_error(path + ": key '" + key + "' has value " + shown + "; expected " + expected +
                             " (not a run's summary.json as reslab writes it)");
  };
  if (!summary.is_object()) {
    throw std::runtime_error(path + ": not a run's summary.json (expected a JSON object, got " +
                             std::string(summary.type_name()) + ")");
  }
  if (!summary.value("run", nlohmann::json()).is_string()) bad("run", "the run's name (a string)");
  const auto& status = summary.value("status", nlohmann::json());
  if (!status.is_string() ||
      (status != "completed" && status != "diverged" && status != "interrupted" && status != "running")) {
    bad("status", "completed, diverged, interrupted or running");
  }
  const auto& iterations = summary.value("iterations", nlohmann::json());
  if (!iterations.is_number_integer() || iterations.get<int64_t>() < 0) bad("iterations", "a non-negative integer");
  const auto& final = summary.value("final", nlohmann::json());
  if (!final.is_object()) bad("final", "an object of final errors");
  for (const char* key : {"train_error", "val_error", "test_error"}) {
    const auto& e = final.value(key, nlohmann::json());
    if (!e.is_null() && !e.is_number()) bad(std::string("final"), std::string("final.") + key + " a number or null");
  }
  for (const char* key : {"model", "dataset"}) {
    if (summary.contains(key) && !summary.at(key).is_string()) bad(key, "a string");
  }
  if (summary.contains("seed") && !summary.at("seed").is_number_integer()) bad("seed", "an integer");
  if (summary.contains("depth") && !summary.at("depth").is_number_integer()) bad("depth", "an integer");
  if (summary.contains("residual") && !summary.at("residual").is_boolean()) bad("residual", "true or false");
  if (summary.contains("machine")) {
    const auto& m = summary.at("machine");
    const auto count = [&](const char* key) {
      return m.contains(key) && m.at(key).is_number_integer() && m.at(key).get<int64_t>() >= 0;
    };
    if (!m.is_object() || !m.value("cpu", nlohmann::json()).is_string() ||
        !m.value("isa", nlohmann::json()).is_string() || !count("logical_cpus") || !count("gpus")) {
      bad("machine", "an object with \"cpu\" and \"isa\" strings and \"logical_cpus\" and \"gpus\" counts");
    }
  }
}

/// Where the runs ran, grouped: one entry per device, machine (summary.json's "machine"; null where a run from
/// before reslab recorded it), thread count and world size, with its runs' names in the order given.
nlohmann::json ran_on(const nlohmann::json& summaries) {
  nlohmann::json groups = nlohmann::json::array();
  for (const auto& s : summaries) {
    if (!s.is_object()) continue;
    nlohmann::json where = {{"device", s.value("device", nlohmann::json())},
                            {"machine", s.value("machine", nlohmann::json())},
                            {"threads", s.value("threads", nlohmann::json())},
                            {"world_size", s.value("world_size", nlohmann::json())}};
    auto group = std::find_if(groups.begin(), groups.end(), [&](const nlohmann::json& g) {
      return g["device"] == where["device"] && g["machine"] == where["machine"] && g["threads"] == where["threads"] &&
             g["world_size"] == where["world_size"];
    });
    if (group == groups.end()) {
      where["runs"] = nlohmann::json::array();
      groups.push_back(where);
      group = groups.end() - 1;
    }
    (*group)["runs"].push_back(s.value("run", nlohmann::json()));
  }
  return groups;
}

nlohmann::json make_results(const std::string& experiment, const std::string& description,
                            const std::vector<RunResult>& runs) {
  std::map<std::string, Row> rows;  // by the row's configuration
  nlohmann::json summaries = nlohmann::json::array();
  for (const auto& run : runs) {
    const auto& s = run.summary;
    summaries.push_back(s);
    if (!s.is_object() || !s.value("depth", nlohmann::json()).is_number_integer() ||
        !s.value("residual", nlohmann::json()).is_boolean()) {
      continue;
    }
    const auto config = row_config(run);
    Row& row = rows[config.dump()];
    row.depth = s["depth"].get<int64_t>();
    row.model = config["model"]["name"].get<std::string>();
    row.config = config;
    Entry e;
    const auto seed = s.contains("seed") ? s["seed"] : run.config.value("seed", nlohmann::json());
    if (seed.is_number_unsigned() || (seed.is_number_integer() && seed.get<int64_t>() >= 0)) {
      e.seed = seed.get<uint64_t>();
    }
    e.run = s.value("run", s.value("model", ""));
    const auto final = s.value("final", nlohmann::json::object());
    e.train = final.value("train_error", nlohmann::json());
    e.test = final.value("test_error", nlohmann::json());
    e.status = s.value("status", "unknown");
    row.sides[s["residual"].get<bool>()].push_back(e);
  }
  auto labels = row_labels(rows);
  // Models of one depth that tags and axes do not tell apart (resnet110 beside preact110) are labelled by name.
  std::map<std::pair<std::string, int64_t>, int> uses;
  for (const auto& [key, row] : rows) ++uses[{labels.at(key), row.depth}];
  for (const auto& [key, row] : rows) {
    if (uses[{labels.at(key), row.depth}] > 1) labels[key] = row.model + labels[key];
  }
  // Depth against depth (Figure 6's claim: plain nets worsen with depth, residual nets improve): each row paired
  // by seed with the shallowest row of the same variant and configuration, the model's depth aside.
  std::map<std::string, std::string> shallowest;  // a row's configuration without its depth -> that row's key
  auto depthless = [&](const std::string& key) {
    auto c = rows.at(key).config;
    const std::string name = rows.at(key).model;
    const size_t digits = name.find_first_of("0123456789");
    const size_t end = digits == std::string::npos ? name.size() : name.find_first_not_of("0123456789", digits);
    c["model"]["name"] = name.substr(0, digits == std::string::npos ? name.size() : digits) + "<depth>" +
                         (end == std::string::npos ? "" : name.substr(end));
    return labels.at(key) + "\n" + c.dump();
  };
  for (const auto& [key, row] : rows) {
    const auto [it, added] = shallowest.emplace(depthless(key), key);
    if (!added && row.depth < rows.at(it->second).depth) it->second = key;
  }
  // Ordered as before: by variant, then depth.
  std::map<std::tuple<std::string, int64_t, std::string>, std::string> order;
  for (const auto& [key, row] : rows) order[{labels.at(key), row.depth, key}] = key;
  nlohmann::json table = nlohmann::json::array();
  for (const auto& [place, key] : order) {
    const Row& row = rows.at(key);
    nlohmann::json out = {{"depth", row.depth}, {"model", row.model}};
    if (!labels.at(key).empty()) out["variant"] = labels.at(key);
    for (const auto& [residual, entries] : row.sides) out[residual ? "residual" : "plain"] = side_json(entries);
    if (row.sides.size() == 2) out["paired"] = paired_errors(row.sides.at(true), row.sides.at(false));
    // Each side against the same side of another row, paired by seed; `vs` names that row.
    auto against = [&row = row](const Row& other, nlohmann::json vs) {
      for (const auto& [residual, entries] : row.sides) {
        const auto same = other.sides.find(residual);
        if (same != other.sides.end()) vs[residual ? "residual" : "plain"] = paired_errors(entries, same->second);
      }
      return vs;
    };
    if (const std::string& base = shallowest.at(depthless(key)); base != key && rows.at(base).depth < row.depth) {
      out["vs_shallowest"] = against(rows.at(base), {{"depth", rows.at(base).depth}});
    }
    const std::string tags = tags_of(row.model);
    if (!tags.empty()) {
      auto baseline_config = row.config;
      const std::string baseline = row.model.substr(0, row.model.size() - tags.size());
      drop_default_groups(baseline_config, row.model);  // the baseline's own defaults (none) in their place
      baseline_config["model"]["name"] = baseline;
      const auto found = rows.find(baseline_config.dump());
      if (found != rows.end()) out["vs_baseline"] = against(found->second, {{"model", baseline}});
    }
    // A row in another precision (bf16) against the same configuration in float32 (whose precision is not written).
    if (row.config.value("train", nlohmann::json()).contains("precision")) {
      auto float32 = row.config;
      erase_train_key(float32, "precision");
      const auto found = rows.find(float32.dump());
      if (found != rows.end()) out["vs_float32"] = against(found->second, {{"precision", "float32"}});
    }
    table.push_back(out);
  }
  // The whole ordering of each family (a variant and configuration, the depth aside) over three depths or more.
  std::map<std::string, std::map<bool, std::map<int64_t, const std::vector<Entry>*>>> families;
  for (const auto& [place, key] : order) {
    for (const auto& [residual, entries] : rows.at(key).sides) {
      families[depthless(key)][residual][rows.at(key).depth] = &entries;
    }
  }
  nlohmann::json trends = nlohmann::json::array();
  for (const auto& [family, sides] : families) {
    nlohmann::json trend = nlohmann::json::object();
    std::set<int64_t> depths;
    for (const auto& [residual, by_depth] : sides) {
      const auto train = depth_slope(by_depth, &Entry::train);
      if (train.is_null()) continue;
      nlohmann::json side = {{"train_error", train}, {"test_error", depth_slope(by_depth, &Entry::test)}};
      nlohmann::json side_depths = nlohmann::json::array();
      for (const auto& [depth, _] : by_depth) side_depths.push_back(depth), depths.insert(depth);
      side["depths"] = side_depths;
      trend[residual ? "residual" : "plain"] = side;
    }
    if (trend.empty()) continue;
    const std::string& label = labels.at(shallowest.at(family));
    if (!label.empty()) trend["variant"] = label;
    trend["depths"] = depths;
    trends.push_back(trend);
  }
  nlohmann::json results = {{"experiment", experiment},
                            {"description", description},
                            {"versions", version_info()},
                            {"ran_on", ran_on(summaries)},
                            {"runs", summaries}};
  if (!table.empty()) results["degradation"] = table;
  if (!trends.empty()) results["depth_trend"] = trends;
  return results;
}

void print_ran_on(const nlohmann::json& results, std::ostream& out) {
  const auto& groups = results.value("ran_on", nlohmann::json());
  if (!groups.is_array() || groups.empty()) return;
  out << "Ran on:\n";
  for (const auto& g : groups) {
    const auto text = [](const nlohmann::json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); };
    std::ostringstream line;
    line << "  " << g["runs"].size() << (g["runs"].size() == 1 ? " run:  " : " runs: ");
    const auto& m = g["machine"];
    if (m.is_object()) {
      line << text(m.value("cpu", nlohmann::json("unknown CPU"))) << " (" << text(m.value("isa", nlohmann::json("?")))
           << ", " << text(m.value("logical_cpus", nlohmann::json("?"))) << " logical CPUs";
      const auto& gpus = m.value("gpus", nlohmann::json());
      if (gpus.is_number_integer() && gpus.get<int64_t>() > 0) line << ", " << gpus.get<int64_t>() << " GPUs";
      line << ")";
    } else {
      line << "machine not recorded (a summary from before reslab recorded it)";
    }
    line << ", device " << text(g["device"]) << ", " << text(g["threads"]) << " threads";
    if (g["world_size"].is_number_integer() && g["world_size"].get<int64_t>() > 1) {
      line << ", " << g["world_size"].get<int64_t>() << " ranks";
    }
    out << line.str() << "\n";
  }
}

std::string format_mean_sd(const nlohmann::json& mean, const nlohmann::json& sd, int64_t n) {
  if (!mean.is_number()) return "-";
  char text[64];
  if (sd.is_number()) {
    std::snprintf(text, sizeof text, "%.2f ± %.2f (%lld)", mean.get<double>(), sd.get<double>(),
                  static_cast<long long>(n));
  } else {
    std::snprintf(text, sizeof text, "%.2f (%lld)", mean.get<double>(), static_cast<long long>(n));
  }
  return text;
}

std::string format_difference(const nlohmann::json& d) {
  if (!d.is_object() || !d.value("mean", nlohmann::json()).is_number()) return "";
  char text[80];
  const auto& ci = d["ci95"];
  if (ci.is_array() && ci.size() == 2) {
    std::snprintf(text, sizeof text, "%+.2f [%.2f, %.2f]", d["mean"].get<double>(), ci[0].get<double>(),
                  ci[1].get<double>());
  } else {
    std::snprintf(text, sizeof text, "%+.2f", d["mean"].get<double>());
  }
  return text;
}

void print_degradation_table(const nlohmann::json& results, std::ostream& out) {
  if (!results.contains("degradation")) return;
  // "±" is two bytes and one column: pad by what the terminal shows.
  auto pad = [](const std::string& s, size_t width) {
    size_t shown = 0;
    for (unsigned char c : s) shown += (c & 0xC0) != 0x80;
    return std::string(shown < width ? width - shown : 0, ' ') + s;
  };
  auto cell = [&pad](const nlohmann::json& row, const char* side, const char* key) {
    if (!row.contains(side)) return pad("-", 18);
    const auto& s = row[side];
    int64_t n = 0;  // the runs with a number: a diverged run has no test error
    for (const auto& e : s.value("per_seed", nlohmann::json::array())) n += e.value(key, nlohmann::json()).is_number();
    return pad(format_mean_sd(s[key], s[std::string(key) + "_sd"], n), 18);
  };
  out << "Final error (%), mean ± sd (runs); training error over the last epoch, test error on the test set:\n";
  out << "  depth |        plain train               test |     residual train               test |"
         " residual - plain, train [95% CI]\n";
  out << "  ------+" << std::string(39, '-') << "+" << std::string(39, '-') << "+" << std::string(33, '-') << "\n";
  for (const auto& row : results["degradation"]) {
    char depth[16];
    std::snprintf(depth, sizeof depth, "%7lld", static_cast<long long>(row["depth"].get<int64_t>()));
    std::string paired;
    if (row.contains("paired")) paired = format_difference(row["paired"]["train_error"]);
    std::ostringstream line;
    line << depth << " | " << cell(row, "plain", "train_error") << " " << cell(row, "plain", "test_error") << " | "
         << cell(row, "residual", "train_error") << " " << cell(row, "residual", "test_error") << " | "
         << pad(paired, 24);
    if (row.contains("variant")) line << "   " << row["variant"].get<std::string>();
    // Each side against the same side of a baseline's row (named by its residual net, as the table is), and a
    // precision's row against float32's.
    // A precision changes what a net learns and how it generalises alike: both errors; a baseline the training
    // error, as the paired column.
    auto sides_text = [](const nlohmann::json& vs, bool with_test) {
      std::string parts;
      for (const char* side : {"residual", "plain"}) {
        if (!vs.contains(side)) continue;
        std::string text = format_difference(vs[side]["train_error"]);
        const std::string test = with_test ? format_difference(vs[side]["test_error"]) : "";
        if (!test.empty()) text = (text.empty() ? "" : "train " + text + ", ") + "test " + test;
        if (!text.empty()) parts += (parts.empty() ? "" : with_test ? "; " : ", ") + std::string(side) + " " + text;
      }
      return parts;
    };
    if (row.contains("vs_baseline")) {
      const auto parts = sides_text(row["vs_baseline"], false);
      if (!parts.empty())
        line << " (vs the " << row["vs_baseline"]["model"].get<std::string>() << " row: " << parts << ")";
    }
    if (row.contains("vs_float32")) {
      const auto parts = sides_text(row["vs_float32"], true);
      if (!parts.empty()) line << " (vs float32: " << parts << ")";
    }
    std::string text = line.str();
    text.erase(text.find_last_not_of(' ') + 1);
    out << text << "\n";
  }
  // Depth against depth, paired by seed: the comparison Figure 6 is about.
  bool header = false;
  for (const auto& row : results["degradation"]) {
    if (!row.contains("vs_shallowest")) continue;
    const auto& vs = row["vs_shallowest"];
    std::ostringstream line;
    line << "  " << row["depth"].get<int64_t>() << " - " << vs["depth"].get<int64_t>() << " layers:";
    bool any = false;
    for (const char* side : {"plain", "residual"}) {
      if (!vs.contains(side)) continue;
      const auto text = format_difference(vs[side]["train_error"]);
      if (text.empty()) continue;
      line << (any ? ", " : " ") << side << " " << text;
      any = true;
    }
    if (!any) continue;
    if (row.contains("variant")) line << "   " << row["variant"].get<std::string>();
    if (!header) {
      out << "Deeper - shallowest net, training error, paired by seed [95% CI]:\n";
      header = true;
    }
    out << line.str() << "\n";
  }
  // The whole ordering: each family's least-squares slope over its depths, per seed.
  if (!results.contains("depth_trend")) return;
  out << "Trend with depth, training error: least-squares slope per seed, points per 10 layers [95% CI] (seeds):\n";
  for (const auto& trend : results["depth_trend"]) {
    std::ostringstream line;
    line << " ";
    bool any = false;
    for (const char* side : {"plain", "residual"}) {
      if (!trend.contains(side)) continue;
      const auto& t = trend[side];
      const auto text = format_difference(t["train_error"]);
      if (text.empty()) continue;
      std::string depths;
      for (const auto& d : t["depths"]) depths += (depths.empty() ? "" : ",") + std::to_string(d.get<int64_t>());
      line << (any ? ", " : " ") << side << " " << text << " (" << t["train_error"]["n"].get<int64_t>()
           << ") over depths " << depths;
      any = true;
    }
    if (!any) continue;
    if (trend.contains("variant")) line << "   " << trend["variant"].get<std::string>();
    out << line.str() << "\n";
  }
}

}  // namespace reslab
