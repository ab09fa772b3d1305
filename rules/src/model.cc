#include "gonfalon/rules/model.h"

namespace gonfalon::rules {

const FlagManagement& Flag::Management() const {
  static const FlagManagement kEmpty;
  return management.has_value() ? *management : kEmpty;
}

void Flag::SetManagement(FlagManagement m) {
  if (m.empty()) {
    management.reset();
  } else {
    management = std::move(m);
  }
}

}  // namespace gonfalon::rules
