"""The screens, in the order the app registers them."""

from __future__ import annotations


def screen_classes() -> list[type]:
    from wallet_app.ui.screens.confirm import ConfirmScreen
    from wallet_app.ui.screens.history import HistoryScreen
    from wallet_app.ui.screens.holds import HoldsScreen
    from wallet_app.ui.screens.home import HomeScreen
    from wallet_app.ui.screens.link import LinkScreen
    from wallet_app.ui.screens.merchant import MerchantScreen
    from wallet_app.ui.screens.offline import OfflineScreen
    from wallet_app.ui.screens.onboarding import OnboardingScreen
    from wallet_app.ui.screens.paycode import PayCodeScreen
    from wallet_app.ui.screens.receipt import ReceiptScreen
    from wallet_app.ui.screens.receive import ReceiveScreen
    from wallet_app.ui.screens.restore import RestoreScreen
    from wallet_app.ui.screens.scan import ScanScreen
    from wallet_app.ui.screens.settings import SettingsScreen
    from wallet_app.ui.screens.subwallets import SubWalletsScreen
    from wallet_app.ui.screens.topup import TopUpScreen
    from wallet_app.ui.screens.unlock import UnlockScreen

    return [OnboardingScreen, UnlockScreen, LinkScreen, HomeScreen, ScanScreen, ConfirmScreen,
            PayCodeScreen, ReceiveScreen, TopUpScreen, HistoryScreen, SubWalletsScreen,
            MerchantScreen, SettingsScreen, OfflineScreen, HoldsScreen, RestoreScreen,
            ReceiptScreen]
